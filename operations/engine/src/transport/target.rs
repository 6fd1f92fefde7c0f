//! `--ssh-host`: `host`, `user@host:port`, `[v6addr]:port`, a Host alias from
//! `~/.ssh/config` (with its ProxyJump hops and identity files), or `@local`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::ssh_config::{SshConfig, Tokens, expand_path};
use crate::error::{Error, from_anyhow};

/// A ProxyJump chain longer than this is taken for a loop in the config.
const MAX_HOPS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local,
    Ssh {
        user: String,
        host: String,
        port: u16,
        keys: Keys,
        /// the jump hosts, first one first; the target is reached through the last
        jumps: Vec<Hop>,
    },
}

/// The keys to log in with (IdentityFile, IdentitiesOnly); empty: every key in the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub files: Vec<PathBuf>,
    /// log in only with `files`, never with other keys of the agent
    pub only: bool,
}

/// One SSH server on the way: a jump host, or the target itself (last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// as written (`bastion`, `admin@10.0.0.5:2222`), for errors
    pub name: String,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub keys: Keys,
}

impl Target {
    /// Parses `spec`, filling what it leaves open from the ssh config file (if any).
    pub fn parse(spec: &str, ssh_config: Option<&Path>) -> Result<Target, Error> {
        Target::resolve(spec, ssh_config).map_err(from_anyhow(Error::Target))
    }

    fn resolve(spec: &str, ssh_config: Option<&Path>) -> anyhow::Result<Target> {
        if spec == "@local" {
            return Ok(Target::Local);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let config = match ssh_config {
            Some(path) => SshConfig::read(path, home.as_deref())?,
            None => SshConfig::default(),
        };
        let resolver = Resolver {
            config: &config,
            home: home.as_deref(),
            local_user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        };
        let (hop, jumps) = resolver
            .resolve(spec, 0)
            .with_context(|| format!("invalid --ssh-host {spec:?}"))?;
        Ok(Target::Ssh {
            user: hop.user,
            host: hop.host,
            port: hop.port,
            keys: hop.keys,
            jumps,
        })
    }

    /// The servers to connect to in order: the jump hosts, then the target.
    pub fn route(&self) -> Vec<Hop> {
        match self {
            Target::Local => vec![],
            Target::Ssh {
                user,
                host,
                port,
                keys,
                jumps,
            } => {
                let mut route = jumps.clone();
                route.push(Hop {
                    name: host.clone(),
                    user: user.clone(),
                    host: host.clone(),
                    port: *port,
                    keys: keys.clone(),
                });
                route
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Local => "the local machine".into(),
            Target::Ssh {
                user,
                host,
                port,
                jumps,
                ..
            } => {
                let mut s = user_host_port(user, host, *port);
                if !jumps.is_empty() {
                    let via: Vec<_> = jumps
                        .iter()
                        .map(|j| user_host_port(&j.user, &j.host, j.port))
                        .collect();
                    s.push_str(&format!(" via {}", via.join(", ")));
                }
                s
            }
        }
    }
}

pub fn user_host_port(user: &str, host: &str, port: u16) -> String {
    match (port, host.contains(':')) {
        (22, _) => format!("{user}@{host}"),
        (_, true) => format!("{user}@[{host}]:{port}"),
        (_, false) => format!("{user}@{host}:{port}"),
    }
}

struct Resolver<'a> {
    config: &'a SshConfig,
    home: Option<&'a Path>,
    local_user: String,
}

impl Resolver<'_> {
    /// `spec` as ssh would take it: the hop itself, and the jump hosts before it (from its
    /// ProxyJump, each resolved through the config too; `depth` counts hops already taken).
    fn resolve(&self, spec: &str, depth: usize) -> anyhow::Result<(Hop, Vec<Hop>)> {
        if depth > MAX_HOPS {
            bail!("more than {MAX_HOPS} ProxyJump hops: is there a loop in the ssh config?");
        }
        let spec_body = spec.strip_prefix("ssh://").unwrap_or(spec);
        let (user, rest) = match spec_body.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec_body),
        };
        let (alias, port) = split_port(rest)?;
        if alias.is_empty() || user.as_deref() == Some("") {
            bail!("expected host, user@host or user@host:port");
        }
        let entry = self.config.lookup(&alias);
        let host = entry.host_name.clone().unwrap_or_else(|| alias.clone());
        let user = user.or(entry.user).unwrap_or_else(|| "root".into());
        let port = port.or(entry.port).unwrap_or(22);
        let tokens = Tokens {
            home: self.home,
            local_user: &self.local_user,
            host: &host,
            remote_user: &user,
            port,
        };
        let files = entry
            .identity_files
            .iter()
            .map(|f| expand_path(f, &tokens))
            .collect::<anyhow::Result<_>>()?;
        let hop = Hop {
            name: spec.to_string(),
            user,
            host,
            port,
            keys: Keys {
                files,
                only: entry.identities_only.unwrap_or(false),
            },
        };
        let jumps = match entry.proxy_jump.as_deref() {
            None | Some("none") => vec![],
            Some(list) => self
                .jumps(list, depth)
                .with_context(|| format!("ProxyJump {list} (for {alias})"))?,
        };
        Ok((hop, jumps))
    }

    /// `ProxyJump a,b`: as `ssh -J a,b`, the first hop is reached as its own config says
    /// (its ProxyJump included), the later ones directly through the hop before them.
    fn jumps(&self, list: &str, depth: usize) -> anyhow::Result<Vec<Hop>> {
        let mut hops = Vec::new();
        for (i, spec) in list.split(',').enumerate() {
            let (hop, before) = self.resolve(spec, depth + 1 + i)?;
            if i == 0 {
                hops.extend(before);
            }
            hops.push(hop);
        }
        if hops.len() > MAX_HOPS {
            bail!("more than {MAX_HOPS} ProxyJump hops: is there a loop in the ssh config?");
        }
        Ok(hops)
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
            keys: Keys::default(),
            jumps: vec![],
        }
    }

    fn hop(name: &str, user: &str, host: &str, port: u16) -> Hop {
        Hop {
            name: name.into(),
            user: user.into(),
            host: host.into(),
            port,
            keys: Keys::default(),
        }
    }

    fn with_config(tag: &str, text: &str, check: impl FnOnce(&Path)) {
        let dir = std::env::temp_dir().join(format!("sshcfg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config");
        std::fs::write(&cfg, text).unwrap();
        check(&cfg);
        std::fs::remove_dir_all(dir).unwrap();
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
        with_config(
            "alias",
            "Host relay\n  HostName 10.77.0.10\n  Port 2200\n  User deploy\n\nHost *\n  User fallback\n",
            |cfg| {
                assert_eq!(
                    Target::parse("relay", Some(cfg)).unwrap(),
                    ssh("deploy", "10.77.0.10", 2200)
                );
                assert_eq!(
                    Target::parse("root@relay:22", Some(cfg)).unwrap(),
                    ssh("root", "10.77.0.10", 22)
                );
                assert_eq!(
                    Target::parse("other", Some(cfg)).unwrap(),
                    ssh("fallback", "other", 22)
                );
            },
        );
    }

    #[test]
    fn proxy_jump_hops_are_resolved_through_the_config() {
        with_config(
            "jump",
            "Host relay\n HostName 10.0.0.20\n ProxyJump bastion, admin@inner:2222\n\
             Host bastion\n HostName 192.0.2.1\n User jump\n ProxyJump ssh://outer:2022\n\
             Host inner\n HostName 10.0.0.5\n ProxyJump ignored-for-a-later-hop\n\
             Host loop\n ProxyJump loop\n\
             Host direct\n ProxyJump none\nHost dir*\n ProxyJump never-used\n",
            |cfg| {
                let t = Target::parse("relay", Some(cfg)).unwrap();
                let Target::Ssh { jumps, .. } = &t else {
                    panic!("{t:?}")
                };
                assert_eq!(
                    jumps,
                    &vec![
                        hop("ssh://outer:2022", "root", "outer", 2022),
                        hop("bastion", "jump", "192.0.2.1", 22),
                        hop("admin@inner:2222", "admin", "10.0.0.5", 2222),
                    ]
                );
                assert_eq!(
                    t.describe(),
                    "root@10.0.0.20 via root@outer:2022, jump@192.0.2.1, admin@10.0.0.5:2222"
                );
                assert_eq!(t.route().len(), 4);
                assert_eq!(
                    Target::parse("direct", Some(cfg)).unwrap(),
                    ssh("root", "direct", 22)
                );
                let err = format!("{:#}", Target::parse("loop", Some(cfg)).unwrap_err());
                assert!(err.contains("loop in the ssh config"), "{err}");
            },
        );
    }

    #[test]
    fn identity_files_are_expanded_per_hop() {
        with_config(
            "keys",
            "Host relay\n HostName relay.example\n IdentityFile /keys/%h-%r\n IdentitiesOnly yes\n",
            |cfg| {
                let Target::Ssh { keys, .. } = Target::parse("admin@relay", Some(cfg)).unwrap()
                else {
                    panic!()
                };
                assert_eq!(
                    keys,
                    Keys {
                        files: vec![PathBuf::from("/keys/relay.example-admin")],
                        only: true
                    }
                );
            },
        );
    }
}
