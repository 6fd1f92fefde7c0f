//! Facts the DNS check needs from the host, gathered in one remote command: its addresses,
//! the DKIM public key (derived there: the private key never leaves the host), the ACME
//! account and whether it can reach other mail servers on port 25.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use facts::Remote;

use super::records::HostFacts;

/// How long the port 25 probe may take on the host before it counts as blocked.
pub const SMTP_PROBE_SECS: u64 = 8;

/// The whole remote command may take this long (the probe is the slow part).
const REMOTE_TIMEOUT: Duration = Duration::from_secs(SMTP_PROBE_SECS + 22);

/// What the host said about outgoing SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpProbe {
    /// A server greeted with 220.
    Ok,
    Failed(String),
}

fn script(probe: &str) -> String {
    // privacy (temporary) IPv6 addresses change daily and are never published; bash's
    // /dev/tcp needs no extra package; `timeout` bounds a silently dropped SYN
    format!(
        r#"echo '== addrs'
{{ ip -o addr show scope global -temporary -deprecated -tentative 2>/dev/null || ip -o addr show scope global; }} | awk '{{print $4}}'
echo '== dkim'
openssl rsa -in /etc/dkimkeys/opendkim.private -pubout 2>/dev/null
echo '== acme'
acmetool account-url 2>/dev/null
echo '== smtp'
timeout {SMTP_PROBE_SECS} bash -c 'exec 3<>/dev/tcp/{probe}/25 && head -c 3 <&3' 2>&1
echo " rc=$?"
"#
    )
}

/// A probe host is put into a shell command: only host-name characters are accepted.
pub fn valid_probe_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

/// Runs the fact-gathering command on the host.
pub async fn gather(
    remote: &impl Remote,
    probe: &str,
    preferred: Option<IpAddr>,
) -> anyhow::Result<(HostFacts, SmtpProbe)> {
    if !valid_probe_host(probe) {
        bail!("invalid port 25 probe host {probe:?}");
    }
    let out = tokio::time::timeout(REMOTE_TIMEOUT, remote.exec(&script(probe), b""))
        .await
        .context("the host did not answer in time")?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(parse(&out.stdout_str(), preferred))
}

/// Parses the command's output; `preferred` (the address we connected to) goes first.
pub fn parse(output: &str, preferred: Option<IpAddr>) -> (HostFacts, SmtpProbe) {
    let mut section = "";
    let (mut addrs, mut pem, mut acme, mut smtp) =
        (Vec::<IpAddr>::new(), Vec::new(), None, String::new());
    for line in output.lines() {
        if let Some(s) = line.strip_prefix("== ") {
            section = s;
            continue;
        }
        match section {
            "addrs" => {
                for word in line.split_whitespace() {
                    let addr = word.split('/').next().unwrap_or("");
                    if let Ok(ip) = addr.parse::<IpAddr>()
                        && !ip.is_loopback()
                        && !addrs.contains(&ip)
                    {
                        addrs.push(ip);
                    }
                }
            }
            "dkim" if !line.starts_with("-----") && !line.trim().is_empty() => {
                pem.push(line.trim().to_string())
            }
            "acme" if line.starts_with("http") => acme = Some(line.trim().to_string()),
            "smtp" => {
                smtp.push_str(line);
                smtp.push('\n');
            }
            _ => {}
        }
    }
    if let Some(p) = preferred
        && let Some(i) = addrs.iter().position(|a| *a == p)
    {
        let p = addrs.remove(i);
        addrs.insert(0, p);
    }
    let facts = HostFacts {
        addrs,
        dkim_public_key: (!pem.is_empty()).then(|| pem.concat()),
        acme_account: acme,
    };
    (facts, smtp_result(&smtp))
}

fn smtp_result(text: &str) -> SmtpProbe {
    let text = text.trim();
    let (said, rc) = match text.rsplit_once("rc=") {
        Some((said, rc)) => (said.trim(), rc.trim()),
        None => return SmtpProbe::Failed("no result".into()),
    };
    if rc == "0" && said.starts_with("220") {
        return SmtpProbe::Ok;
    }
    if rc == "124" {
        return SmtpProbe::Failed(format!("no answer within {SMTP_PROBE_SECS} s"));
    }
    // bash says "bash: line 1: connect: Network is unreachable" or "bash: line 1:
    // mx.example: Name or service not known"; its first line names the cause
    let first = said.lines().map(str::trim).find(|l| !l.is_empty());
    let reason = match first {
        Some(l) => {
            let l = l.strip_prefix("bash: ").unwrap_or(l);
            let l = match l.split_once(": ") {
                Some((line, rest)) if line.starts_with("line ") => rest,
                _ => l,
            };
            l.strip_prefix("connect: ").unwrap_or(l)
        }
        None => "no SMTP greeting",
    };
    SmtpProbe::Failed(reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_key_account_and_probe() {
        let out = "== addrs\n10.77.0.10/24\nfd77::10/64\n== dkim\n-----BEGIN PUBLIC KEY-----\nMIIBIjAN\nBgkqhkiG\n-----END PUBLIC KEY-----\n== acme\nhttps://acme.test/acct/7\n== smtp\n220 rc=0\n";
        let (f, smtp) = parse(out, Some("fd77::10".parse().unwrap()));
        assert_eq!(
            f.addrs,
            vec![
                "fd77::10".parse::<IpAddr>().unwrap(),
                "10.77.0.10".parse().unwrap()
            ]
        );
        assert_eq!(f.dkim_public_key.as_deref(), Some("MIIBIjANBgkqhkiG"));
        assert_eq!(f.acme_account.as_deref(), Some("https://acme.test/acct/7"));
        assert_eq!(smtp, SmtpProbe::Ok);
    }

    #[test]
    fn missing_key_and_failed_probes() {
        let out = "== addrs\n203.0.113.7 2001:db8::7\n== dkim\n== acme\n== smtp\nbash: line 1: connect: Network is unreachable\nbash: line 1: /dev/tcp/x/25: Network is unreachable\n rc=1\n";
        let (f, smtp) = parse(out, None);
        assert_eq!(f.addrs.len(), 2);
        assert_eq!(f.dkim_public_key, None);
        assert_eq!(f.acme_account, None);
        assert_eq!(smtp, SmtpProbe::Failed("Network is unreachable".into()));
        let (_, smtp) = parse("== smtp\n rc=124\n", None);
        assert_eq!(smtp, SmtpProbe::Failed("no answer within 8 s".into()));
        let out = "== smtp\nbash: line 1: mx.x: Name or service not known\nbash: line 1: /dev/tcp/mx.x/25: Invalid argument\n rc=1\n";
        let (_, smtp) = parse(out, None);
        assert_eq!(
            smtp,
            SmtpProbe::Failed("mx.x: Name or service not known".into())
        );
        let (_, smtp) = parse("== smtp\n rc=1\n", None);
        assert_eq!(smtp, SmtpProbe::Failed("no SMTP greeting".into()));
    }

    #[test]
    fn probe_host_is_checked() {
        assert!(valid_probe_host("mx.example.org"));
        assert!(!valid_probe_host("x; rm -rf /"));
        assert!(!valid_probe_host("$(id)"));
    }
}
