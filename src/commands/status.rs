//! `status`: how a deployed relay is doing, in one remote command (one facts query).

use std::process::ExitCode;

use anyhow::Context;
use engine::driver::HostArgs;
use engine::transport::Host;
use facts::Query;

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    config: ConfigArg,
}

/// The packages whose versions the report names.
const PACKAGES: &[&str] = &["postfix", "dovecot-core", "nginx", "opendkim", "unbound"];
/// The pin chatmail's Dovecot build leaves: the deploy pins apt to it when it installs it.
const DOVECOT_PIN: &str = "/etc/apt/preferences.d/pin-dovecot";
const VERSION_FILE: &str = "/etc/chatmail-version";

/// The report's lines after the units: (label, fact output name, command).
fn outputs(config: &chatmaild::config::Config) -> [(&'static str, String); 4] {
    let mbox = facts::shell::quote(&config.mailboxes_dir.display().to_string());
    let cert = facts::shell::quote(&config.tls_cert_path);
    [
        (
            "certificate",
            format!("openssl x509 -noout -enddate -in {cert}"),
        ),
        (
            "disk (free, used)",
            format!("df -h --output=avail,pcent {mbox} | tail -n 1"),
        ),
        (
            "mailboxes",
            format!("find {mbox} -mindepth 1 -maxdepth 1 -name '*@*' | wc -l"),
        ),
        ("mail queue", "(postqueue -j || true) | wc -l".into()),
    ]
}

/// What `status` asks: every unit a component declares (those not installed on this relay
/// are left out of the report), the versions, the certificate, disk and queue.
fn query(config: &chatmaild::config::Config) -> Query {
    let mut q = Query::default();
    q.units.extend(
        crate::relay::components::units()
            .iter()
            .map(|u| u.to_string()),
    );
    q.reads.insert(VERSION_FILE.into());
    q.packages.extend(PACKAGES.iter().map(|p| p.to_string()));
    q.paths.insert(DOVECOT_PIN.into());
    for (label, command) in outputs(config) {
        q.outputs.insert(label.into(), command);
    }
    q
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = chatmaild::config::Config::load(&args.config.config)?;
    let host = args.host.or_host(&config.mail_domain_bare);
    let target = host.target()?;
    let remote = Host::connect(&target, &host.ssh_options()?).await?;
    let facts = query(&config)
        .gather(&remote)
        .await
        .context("reading the relay's status");
    remote.close().await;
    let facts = facts?;
    let mut failed = Vec::new();
    println!("units:");
    for unit in crate::relay::components::units() {
        let Some(u) = facts.units.get(unit).filter(|u| u.load_state == "loaded") else {
            continue;
        };
        let state = &u.active_state;
        if state != "active" {
            failed.push(u.id.clone());
        }
        let mark = if state == "active" { "ok  " } else { "FAIL" };
        let since = if u.active_since.is_empty() {
            String::new()
        } else {
            format!(" since {}", u.active_since)
        };
        println!("  {mark} {}: {state}{since}", u.id);
    }
    let version = facts.reads.get(VERSION_FILE).cloned().flatten();
    line(
        "deployed",
        version.as_deref().and_then(|v| v.lines().next()),
    );
    let packages: Vec<String> = PACKAGES
        .iter()
        .filter_map(|p| facts.packages.get(*p).filter(|p| p.installed()))
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    line("packages", Some(&packages.join(", ")));
    let dovecot = facts
        .packages
        .get("dovecot-core")
        .filter(|p| p.installed())
        .map(|p| p.version.as_str());
    println!(
        "dovecot build: {}",
        dovecot_build(dovecot, facts.paths.contains_key(DOVECOT_PIN))
    );
    for (label, _) in outputs(&config) {
        let value = facts
            .outputs
            .get(label)
            .map(|v| v.trim().replace('\n', ", "));
        line(label, value.as_deref());
    }
    if failed.is_empty() {
        println!("status: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("status: {} not active: {}", failed.len(), failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// `label: value`, `-` for nothing.
fn line(label: &str, value: Option<&str>) {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("-");
    println!("{label}: {value}");
}

/// Which Dovecot build runs: the deploy pins apt to chatmail's build when it installs it.
fn dovecot_build(version: Option<&str>, pinned: bool) -> String {
    match version {
        Some(version) if pinned => format!("chatmail's {version}"),
        Some(version) => format!(
            "WARN Debian's {version}, not chatmail's (new mail reaches idle clients 0.5 s later)"
        ),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_dovecot_build() {
        assert_eq!(
            dovecot_build(Some("1:2.3.21+dfsg1-3"), true),
            "chatmail's 1:2.3.21+dfsg1-3"
        );
        assert!(
            dovecot_build(Some("1:2.3.19.1+dfsg1-2.1+deb12u1"), false)
                .starts_with("WARN Debian's 1:2.3.19.1")
        );
        assert_eq!(dovecot_build(None, true), "-");
    }

    /// Every unit of the relay is asked for in the one query, mail and certificate too.
    #[test]
    fn asks_for_every_declared_unit_in_one_query() {
        let config = chatmaild::config::Config::parse(
            "[params]\nmail_domain = chat.example.org\n",
            "chatmail.ini",
        )
        .unwrap();
        let q = query(&config);
        for unit in [
            "postfix.service",
            "filtermail-transport.service",
            "mtail.service",
        ] {
            assert!(q.units.contains(unit), "{unit}");
        }
        assert!(q.outputs["certificate"].contains("/var/lib/acme/live/chat.example.org/fullchain"));
        assert!(q.outputs["mailboxes"].contains("/home/vmail/mail/chat.example.org"));
    }
}
