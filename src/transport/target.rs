//! `--ssh-host`: `host`, `user@host:port`, `[v6addr]:port`, a Host alias from
//! `~/.ssh/config`, or `@local`.

use std::path::Path;

use anyhow::{Context, bail};

use super::ssh_config::SshConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local,
    Ssh {
        user: String,
        host: String,
        port: u16,
    },
}

impl Target {
    /// Parses `spec`, filling what it leaves open from the ssh config file (if any).
    pub fn parse(spec: &str, ssh_config: Option<&Path>) -> anyhow::Result<Target> {
        if spec == "@local" {
            return Ok(Target::Local);
        }
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (host, port) =
            split_port(rest).with_context(|| format!("invalid --ssh-host {spec:?}"))?;
        if host.is_empty() || user.as_deref() == Some("") {
            bail!("invalid --ssh-host {spec:?}: expected host, user@host or user@host:port");
        }
        let config = match ssh_config {
            Some(path) => SshConfig::read(path)?,
            None => SshConfig::default(),
        };
        let entry = config.lookup(&host);
        Ok(Target::Ssh {
            user: user.or(entry.user).unwrap_or_else(|| "root".into()),
            host: entry.host_name.unwrap_or(host),
            port: port.or(entry.port).unwrap_or(22),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Local => "the local machine".into(),
            Target::Ssh {
                user,
                host,
                port: 22,
            } => format!("{user}@{host}"),
            Target::Ssh { user, host, port } => format!("{user}@{host}:{port}"),
        }
    }
}

fn split_port(s: &str) -> anyhow::Result<(String, Option<u16>)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']').context("missing ']'")?;
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.parse().context("bad port")?),
            None if rest.is_empty() => None,
            None => bail!("unexpected {rest:?} after ']'"),
        };
        return Ok((addr.to_string(), port));
    }
    match s.split_once(':') {
        Some((h, p)) if !p.contains(':') => {
            Ok((h.to_string(), Some(p.parse().context("bad port")?)))
        }
        Some(_) => Ok((s.to_string(), None)), // a bare IPv6 address
        None => Ok((s.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(user: &str, host: &str, port: u16) -> Target {
        Target::Ssh {
            user: user.into(),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_the_forms() {
        assert_eq!(Target::parse("@local", None).unwrap(), Target::Local);
        assert_eq!(
            Target::parse("relay.example", None).unwrap(),
            ssh("root", "relay.example", 22)
        );
        assert_eq!(
            Target::parse("admin@10.0.0.1:2222", None).unwrap(),
            ssh("admin", "10.0.0.1", 2222)
        );
        assert_eq!(
            Target::parse("[fd77::10]:22", None).unwrap(),
            ssh("root", "fd77::10", 22)
        );
        assert_eq!(
            Target::parse("fd77::10", None).unwrap(),
            ssh("root", "fd77::10", 22)
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "@", "root@", "host:port", "host:99999", "[::1"] {
            assert!(Target::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_aliases_from_ssh_config() {
        let dir = std::env::temp_dir().join(format!("sshcfg{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config");
        std::fs::write(
            &cfg,
            "Host relay\n  HostName 10.77.0.10\n  Port 2200\n  User deploy\n\nHost *\n  User fallback\n",
        )
        .unwrap();
        assert_eq!(
            Target::parse("relay", Some(&cfg)).unwrap(),
            ssh("deploy", "10.77.0.10", 2200)
        );
        assert_eq!(
            Target::parse("root@relay:22", Some(&cfg)).unwrap(),
            ssh("root", "10.77.0.10", 22)
        );
        assert_eq!(
            Target::parse("other", Some(&cfg)).unwrap(),
            ssh("fallback", "other", 22)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
