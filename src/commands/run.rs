//! `run`: deploy the relay described by chatmail.ini.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use engine::driver::{HostArgs, PlanArgs, deploy_with};

use super::ConfigArg;
use crate::relay::dovecot_build::DovecotDebs;
use crate::relay::{self, Relay, RelayOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    config: ConfigArg,
    /// Stop and disable Postfix and Dovecot, deploy everything else (first step of a migration)
    #[arg(long)]
    disable_mail: bool,
    /// Directory with the relay binaries built for the host (default: those this program
    /// carries for the host's arch, else the ones next to this program)
    #[arg(long, env = "CHATMAIL_BIN_DIR", value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// ACME directory URL instead of Let's Encrypt's (for test CAs)
    #[arg(long, value_name = "URL")]
    acme_directory: Option<String>,
    /// acmetool response key that accepts the CA's terms of service
    #[arg(long, value_name = "KEY")]
    acme_agreement: Option<String>,
    /// Upload this file instead of downloading a third-party binary (chatmail-turn,
    /// iroh-relay, mtail), for hosts without internet
    #[arg(long = "binary", value_name = "NAME=PATH", value_parser = parse_binary)]
    binaries: Vec<(String, PathBuf)>,
    /// Leave out an optional component: turn, iroh-relay, mtail
    #[arg(long, value_name = "COMPONENT", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(relay::optional()))]
    skip: Vec<String>,
    /// Deploy only the web pages built from www/ (the relay must be deployed already)
    #[arg(long, conflicts_with = "disable_mail")]
    website_only: bool,
    /// Use DIR/NAME instead of the built-in template NAME (e.g. DIR/postfix/main.cf.j2);
    /// every config is still validated on the host before a service uses it
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Base URL of chatmail's Dovecot .debs instead of upstream's (needs --dovecot-pins)
    #[arg(long, value_name = "URL", requires = "dovecot_pins")]
    dovecot_debs: Option<String>,
    /// sha256sum-format file pinning every .deb at --dovecot-debs
    /// (`<sha256>  dovecot-core_<version>_<arch>.deb`, also imapd and lmtpd)
    #[arg(long, value_name = "FILE", requires = "dovecot_debs")]
    dovecot_pins: Option<PathBuf>,
}

fn parse_binary(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or("expected NAME=PATH")?;
    Ok((name.to_string(), PathBuf::from(path)))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.config.config.exists() {
        bail!(
            "expecting {} to exist, run init first?",
            args.config.config.display()
        );
    }
    let dovecot_debs = match (&args.dovecot_debs, &args.dovecot_pins) {
        (Some(url), Some(pins)) => {
            let text = std::fs::read_to_string(pins)
                .with_context(|| format!("cannot read {}", pins.display()))?;
            DovecotDebs::from_pins(url, &text)
                .with_context(|| format!("--dovecot-pins {}", pins.display()))?
        }
        _ => DovecotDebs::default(),
    };
    let options = RelayOptions {
        disable_mail: args.disable_mail,
        bin_dir: args.bin_dir,
        acme_directory: args.acme_directory,
        acme_agreement: args.acme_agreement,
        version: version_stamp(),
        // the host's arch replaces it once its facts are in (`Relay::for_host`)
        arch: relay::embedded::planning_arch().into(),
        local_binaries: args.binaries.into_iter().collect(),
        skip: args.skip.into_iter().collect(),
        website_only: args.website_only,
        template_dir: args.templates,
        dovecot_debs,
    };

    let relay = Relay::load(&args.config.config, options)?;
    let reporter = engine::printer::for_output(args.plan.json);
    for warning in &relay.warnings {
        reporter.host_warning(warning);
    }
    if relay.options.website_only && relay.website.is_none() {
        bail!("--website-only: there are no web pages to deploy (see the warning above)");
    }
    // the resources do not depend on the architecture, only the binaries' sources do
    let query = relay::fact_query(&relay)?;
    let state_for = |facts: &facts::HostFacts| -> Result<operations::State, engine::Error> {
        relay::preflight::check(&relay.config, facts)
            // every binary is checked against the host before it can be uploaded
            .and_then(|()| relay::desired_state(&relay.for_host(facts)))
            .map_err(engine::Error::state)
    };
    let host = args.host.or_host(&relay.config.mail_domain_bare);
    let code = deploy_with(&host, &args.plan, &query, &state_for, &*reporter).await?;
    if !relay.config.unused_keys.is_empty() {
        reporter.host_warning(&format!(
            "{} contains settings that have no effect: {}",
            args.config.config.display(),
            relay.config.unused_keys.join(", ")
        ));
    }
    Ok(code)
}

/// The commit this tool was built from, in upstream's format: the commit line, then the
/// undeployed `git diff` (always empty here: a binary carries its commit, not a work tree).
/// Upstream's online test reads every line after the first as diff output. Stable for one
/// build, so that a re-run with the same binary changes nothing.
fn version_stamp() -> String {
    format!("{}\n", env!("CHATMAIL_DEPLOY_COMMIT"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_stamp_is_one_commit_line_like_upstreams() {
        let stamp = super::version_stamp();
        let commit = stamp.strip_suffix('\n').expect("ends with a newline");
        assert!(!commit.contains('\n'), "{stamp:?}");
        assert!(
            commit == "unknown"
                || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{stamp:?}"
        );
    }
}
