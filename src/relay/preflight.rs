//! Checks before anything changes on the host: privacy contacts that are not the upstream
//! operators', an mtail address the host really has, and ports nobody else holds.

use anyhow::bail;
use facts::{HostFacts, Query};

use ::chatmaild::config::Config;

const MTAIL_CHECK: &str = "preflight: mtail_address on the host";

/// The host's TCP listeners with their programs, in `ss -Hltnp` format.
const LISTENERS: &str = "preflight: listeners";
const NO_SS: &str = "@no-ss";

/// `ss -Hltnp`, or the same lines from /proc where minimal images lack iproute2 (a fresh
/// test host has no `ss`): listening sockets from /proc/net/tcp{,6}, programs by socket inode.
const LISTENERS_SCRIPT: &str = r#"if command -v ss >/dev/null; then ss -Hltnp; else
for f in /proc/net/tcp /proc/net/tcp6; do [ -r $f ] && awk 'NR>1 && $4=="0A" {print $2, $10}' $f; done |
while read -r local inode; do port=$((0x${local##*:})); prog=
for p in /proc/[0-9]*; do if ls -l $p/fd 2>/dev/null | grep -q "socket:\[$inode\]"; then prog=$(printf '(("%s",pid=%s,fd=0))' "$(cat $p/comm)" "${p#/proc/}"); break; fi; done
echo "LISTEN 0 0 *:$port *:* users:$prog"; done; fi"#;

/// Adds the host-side checks to the facts query.
pub fn extend_query(config: &Config, q: &mut Query) {
    if let Some(addr) = mtail_address_to_check(config) {
        q.checks.insert(
            MTAIL_CHECK.into(),
            format!(
                "ip -4 -o addr show | grep -q ' {}/'",
                addr.replace('\'', "")
            ),
        );
    }
    q.outputs.insert(
        LISTENERS.into(),
        format!("{{ {LISTENERS_SCRIPT}; }} || echo {NO_SS}"),
    );
}

/// The mtail address the host must have (asked only then): a loopback one it always has.
fn mtail_address_to_check(config: &Config) -> Option<&str> {
    config.mtail_address.as_deref().filter(|a| !is_loopback(a))
}

/// One listening socket: its port and the programs holding it (`(name, pid)`; empty when
/// `ss` cannot see them, e.g. a process in another PID namespace).
#[derive(Debug, PartialEq)]
struct Listener {
    port: u16,
    programs: Vec<(String, String)>,
}

/// Parses `ss -Hltnp` lines: `LISTEN 0 4096 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=7,fd=6))`.
fn parse_listeners(out: &str) -> Vec<Listener> {
    out.lines()
        .filter_map(|line| {
            let local = line.split_whitespace().nth(3)?;
            let port = local.rsplit_once(':')?.1.parse().ok()?;
            let programs = line
                .split("((\"")
                .skip(1)
                .flat_map(|users| users.split("),(\""))
                .filter_map(|entry| {
                    let (name, rest) = entry.trim_start_matches('"').split_once('"')?;
                    let pid = rest
                        .split(',')
                        .find_map(|f| f.strip_prefix("pid="))
                        .unwrap_or("?");
                    Some((name.to_string(), pid.to_string()))
                })
                .collect();
            Some(Listener { port, programs })
        })
        .collect()
}

/// The first port of the relay held by another program, as an error line.
fn port_conflict(config: &Config, listeners: &[Listener]) -> Option<String> {
    for (port, allowed) in super::components::ports(config) {
        for l in listeners.iter().filter(|l| l.port == port) {
            if l.programs.is_empty() {
                return Some(format!(
                    "port {port} is held by a program this host does not show (another container or the host outside it?); the relay needs it for {}",
                    allowed.join("/")
                ));
            }
            if let Some((name, pid)) = l
                .programs
                .iter()
                .find(|(name, _)| !allowed.contains(&name.as_str()))
            {
                return Some(format!(
                    "port {port} is held by {name} (pid {pid}); the relay needs it for {}: stop {name} or move it to another port",
                    allowed.join("/")
                ));
            }
        }
    }
    None
}

fn is_loopback(addr: &str) -> bool {
    matches!(addr, "127.0.0.1" | "::1" | "localhost")
}

/// Refuses a deploy that would break the host or publish someone else's contacts.
pub fn check(config: &Config, facts: &HostFacts) -> anyhow::Result<()> {
    check_release(&facts.os)?;
    check_privacy(config)?;
    if mtail_address_to_check(config).is_some() && facts.checks.get(MTAIL_CHECK) == Some(&false) {
        bail!(
            "mtail_address {} is not an address of the host (VPN down?)",
            config.mtail_address.as_deref().unwrap_or("")
        );
    }
    // wherever ss works, containers included: a squatter there breaks the relay just the same
    if let Some(out) = facts.outputs.get(LISTENERS)
        && !out.contains(NO_SS)
        && let Some(conflict) = port_conflict(config, &parse_listeners(out))
    {
        bail!("{conflict}");
    }
    Ok(())
}

/// Debian releases whose packages and config formats the relay model is written for
/// (another release has other package names and a Dovecot that refuses this config).
pub const SUPPORTED_DEBIAN: &[&str] = &["12", "13"];

fn check_release(os: &facts::OsRelease) -> anyhow::Result<()> {
    // other distributions are refused by the engine itself, with its own message
    if os.is_debian() && !SUPPORTED_DEBIAN.contains(&os.version_id.as_str()) {
        let name = if os.pretty_name.is_empty() {
            "Debian"
        } else {
            os.pretty_name.as_str()
        };
        bail!(
            "the host runs {name} (VERSION_ID={:?}): relays are deployed on Debian {} only",
            os.version_id,
            SUPPORTED_DEBIAN.join(", ")
        );
    }
    Ok(())
}

fn check_privacy(config: &Config) -> anyhow::Result<()> {
    let domain = config.mail_domain_bare.as_str();
    if domain == "testrun.org" || domain.ends_with(".testrun.org") {
        return Ok(());
    }
    let contacts = [
        &config.privacy_postal,
        &config.privacy_mail,
        &config.privacy_pdo,
        &config.privacy_supervisor,
    ];
    for value in contacts.into_iter().flatten() {
        let lower = value.to_lowercase();
        if ["merlinux", "schmieder", "testrun.org"]
            .iter()
            .any(|w| lower.contains(w))
        {
            bail!(
                "chatmail.ini has the upstream operators' privacy contacts: please set your own privacy_* values"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!("[params]\nmail_domain = chat.example.org\n{extra}"),
            "chatmail.ini",
        )
        .unwrap()
    }

    #[test]
    fn upstream_privacy_contacts_are_refused() {
        assert!(check_privacy(&config("privacy_mail = privacy@merlinux.eu\n")).is_err());
        assert!(check_privacy(&config("privacy_postal = Schmieder GmbH\n")).is_err());
        assert!(check_privacy(&config("privacy_mail = me@example.org\n")).is_ok());
        let testrun = Config::parse(
            "[params]\nmail_domain = nine.testrun.org\nprivacy_mail = x@merlinux.eu\n",
            "chatmail.ini",
        )
        .unwrap();
        assert!(check_privacy(&testrun).is_ok());
    }

    #[test]
    fn checks_are_asked_and_judged() {
        let c = config("mtail_address = 10.77.0.99\n");
        let mut q = Query::default();
        extend_query(&c, &mut q);
        assert!(q.checks[MTAIL_CHECK].contains("' 10.77.0.99/'"));
        assert!(q.outputs[LISTENERS].contains("ss -Hltnp"));
        let mut facts = HostFacts::default();
        facts.checks.insert(MTAIL_CHECK.into(), false);
        let err = check(&c, &facts).unwrap_err().to_string();
        assert!(
            err.contains("mtail_address 10.77.0.99 is not an address of the host"),
            "{err}"
        );
        facts.checks.insert(MTAIL_CHECK.into(), true);
        facts.container = Some("lxc".into());
        facts.outputs.insert(
            LISTENERS.into(),
            "LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:((\"apache2\",pid=812,fd=4),(\"apache2\",pid=813,fd=4))\n".into(),
        );
        assert_eq!(
            check(&c, &facts).unwrap_err().to_string(),
            "port 443 is held by apache2 (pid 812); the relay needs it for nginx: stop apache2 or move it to another port",
            "containers are checked too"
        );
        facts.outputs.insert(LISTENERS.into(), format!("{NO_SS}\n"));
        assert!(check(&c, &facts).is_ok(), "no ss, no judgement");
    }

    /// The /proc fallback's lines parse like ss's (run here, where ss exists too).
    #[test]
    fn the_proc_fallback_lists_listeners_in_ss_format() {
        let fallback = LISTENERS_SCRIPT.replacen("command -v ss >/dev/null", "false", 1);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&fallback)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.is_empty());
        assert_eq!(parse_listeners(&text).len(), text.lines().count(), "{text}");
    }

    /// Captured on a deployed test relay (Debian 12, systemd-nspawn), shortened.
    #[test]
    fn a_deployed_relay_holds_its_own_ports() {
        let out = "LISTEN 0 100 0.0.0.0:25 0.0.0.0:* users:((\"master\",pid=1203,fd=13))\n\
LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:((\"nginx\",pid=1301,fd=8),(\"nginx\",pid=1300,fd=8))\n\
LISTEN 0 511 [::]:443 [::]:* users:((\"nginx\",pid=1301,fd=9))\n\
LISTEN 0 256 127.0.0.1:53 0.0.0.0:* users:((\"unbound\",pid=990,fd=5))\n\
LISTEN 0 4096 127.0.0.1:10080 0.0.0.0:* users:((\"filtermail\",pid=1100,fd=9))\n\
LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=80,fd=3))\n";
        let l = parse_listeners(out);
        assert_eq!(l.len(), 6);
        assert_eq!(
            l[1].programs,
            [
                ("nginx".into(), "1301".into()),
                ("nginx".into(), "1300".into())
            ]
        );
        assert_eq!(port_conflict(&config(""), &l), None);
        let hidden = parse_listeners("LISTEN 0 511 *:80 *:*\n");
        assert!(
            port_conflict(&config(""), &hidden)
                .unwrap()
                .starts_with("port 80 is held by a program this host does not show")
        );
    }

    #[test]
    fn only_supported_debian_releases() {
        let os = |v: &str| facts::OsRelease {
            id: "debian".into(),
            version_id: v.into(),
            pretty_name: format!("Debian GNU/Linux {v}"),
            ..Default::default()
        };
        assert!(check_release(&os("12")).is_ok());
        assert!(check_release(&os("13")).is_ok());
        for v in ["11", "14", ""] {
            let err = check_release(&os(v)).unwrap_err().to_string();
            assert!(
                err.contains("relays are deployed on Debian 12, 13 only"),
                "{err}"
            );
            assert!(err.contains(&format!("VERSION_ID=\"{v}\"")), "{err}");
        }
    }
}
