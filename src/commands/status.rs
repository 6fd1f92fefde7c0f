//! `status`: how a deployed relay is doing, in one remote command.

use std::process::ExitCode;

use anyhow::Context;
use engine::driver::HostArgs;
use engine::transport::Host;
use facts::Remote;

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    config: ConfigArg,
}

/// Units a relay runs; those not installed on this relay are left out of the report.
const UNITS: &[&str] = &[
    "postfix.service",
    "dovecot.service",
    "nginx.service",
    "opendkim.service",
    "unbound.service",
    "fcgiwrap.socket",
    "doveauth.service",
    "chatmail-metadata.service",
    "lastlogin.service",
    "filtermail.service",
    "filtermail-incoming.service",
    "filtermail-transport.service",
    "turnserver.service",
    "iroh-relay.service",
    "mtail.service",
    "acmetool-redirector.service",
    "chatmail-expire.timer",
    "chatmail-fsreport.timer",
    "acmetool-reconcile.timer",
];

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = chatmaild::config::Config::load(&args.config.config)?;
    let host = args.host.or_host(&config.mail_domain_bare);
    let target = host.target()?;
    let remote = Host::connect(&target, &host.ssh_options()?).await?;
    let mbox = facts::shell::quote(&config.mailboxes_dir.display().to_string());
    let cert = facts::shell::quote(&config.tls_cert_path);
    let script = format!(
        "export LC_ALL=C\n\
         systemctl show -p Id,LoadState,ActiveState,ActiveEnterTimestamp -- {units}\n\
         echo @@version; cat /etc/chatmail-version 2>/dev/null | head -n 1\n\
         echo @@packages; dpkg-query -W -f='${{Package}} ${{Version}}\\n' postfix dovecot-core nginx opendkim unbound 2>/dev/null\n\
         echo @@dovecot; dpkg-query -W -f='${{Version}}\n' dovecot-core 2>/dev/null && [ -e /etc/apt/preferences.d/pin-dovecot ] && echo chatmail\n\
         echo @@cert; openssl x509 -noout -enddate -in {cert} 2>/dev/null\n\
         echo @@disk; df -h --output=avail,pcent {mbox} 2>/dev/null | tail -n 1\n\
         echo @@mailboxes; find {mbox} -mindepth 1 -maxdepth 1 -name '*@*' 2>/dev/null | wc -l\n\
         echo @@queue; (postqueue -j 2>/dev/null || true) | wc -l\n",
        units = UNITS.join(" ")
    );
    let out = remote
        .exec(&script, b"")
        .await
        .context("reading the relay's status")?;
    let text = out.stdout_str();
    let (units, rest) = text.split_once("@@version\n").unwrap_or((&text, ""));
    let mut failed = Vec::new();
    println!("units:");
    for block in units.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        };
        if field("LoadState") != "loaded" {
            continue;
        }
        let (id, state, since) = (
            field("Id"),
            field("ActiveState"),
            field("ActiveEnterTimestamp"),
        );
        if state != "active" {
            failed.push(id.clone());
        }
        let mark = if state == "active" { "ok  " } else { "FAIL" };
        let since = if since.is_empty() {
            String::new()
        } else {
            format!(" since {since}")
        };
        println!("  {mark} {id}: {state}{since}");
    }
    for (name, body) in sections(&format!("@@version\n{rest}")) {
        let label = match name {
            "version" => "deployed",
            "packages" => "packages",
            "dovecot" => {
                println!("dovecot build: {}", dovecot_build(body));
                continue;
            }
            "cert" => "certificate",
            "disk" => "disk (free, used)",
            "mailboxes" => "mailboxes",
            "queue" => "mail queue",
            _ => continue,
        };
        let value = body.trim().replace('\n', ", ");
        println!("{label}: {}", if value.is_empty() { "-" } else { &value });
    }
    remote.close().await;
    if failed.is_empty() {
        println!("status: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("status: {} not active: {}", failed.len(), failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Which Dovecot build runs: the deploy pins apt to chatmail's build when it installs it.
fn dovecot_build(section: &str) -> String {
    let mut lines = section.lines();
    match (lines.next(), lines.next()) {
        (Some(version), Some("chatmail")) => format!("chatmail's {version}"),
        (Some(version), _) if !version.is_empty() => format!(
            "WARN Debian's {version}, not chatmail's (new mail reaches idle clients 0.5 s later)"
        ),
        _ => "-".into(),
    }
}

/// Splits "@@name\nbody@@name2\nbody2..." (markers at line starts) into (name, body).
fn sections(text: &str) -> Vec<(&str, &str)> {
    text.split("@@")
        .filter(|s| !s.is_empty())
        .map(|s| s.split_once('\n').unwrap_or((s, "")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_dovecot_build() {
        assert_eq!(
            dovecot_build("1:2.3.21+dfsg1-3\nchatmail\n"),
            "chatmail's 1:2.3.21+dfsg1-3"
        );
        assert!(
            dovecot_build("1:2.3.19.1+dfsg1-2.1+deb12u1\n").starts_with("WARN Debian's 1:2.3.19.1")
        );
        assert_eq!(dovecot_build(""), "-");
    }

    #[test]
    fn splits_sections() {
        let s = sections("@@version\nabc\ndef\n@@disk\n 1G 3%\n@@queue\n0\n");
        assert_eq!(
            s,
            vec![
                ("version", "abc\ndef\n"),
                ("disk", " 1G 3%\n"),
                ("queue", "0\n")
            ]
        );
    }
}
