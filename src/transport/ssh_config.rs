//! The part of `~/.ssh/config` that says where a host alias points: HostName, Port, User.
//! As in OpenSSH, the first value found for a key wins.

use std::path::Path;

use anyhow::Context;

#[derive(Debug, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

#[derive(Debug, Default)]
struct Block {
    patterns: Vec<String>,
    host_name: Option<String>,
    port: Option<u16>,
    user: Option<String>,
}

#[derive(Debug, Default)]
pub struct Entry {
    pub host_name: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
}

impl SshConfig {
    /// A missing file is an empty config.
    pub fn read(path: &Path) -> anyhow::Result<SshConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SshConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<SshConfig> {
        let mut blocks = vec![Block {
            patterns: vec!["*".into()],
            ..Block::default()
        }];
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once(|c: char| c.is_whitespace() || c == '=')
                .map(|(k, v)| {
                    (
                        k,
                        v.trim_start_matches(|c: char| c.is_whitespace() || c == '=')
                            .trim(),
                    )
                })
                .unwrap_or((line, ""));
            let value = value.trim_matches('"').to_string();
            let block = blocks.last_mut().expect("there is always a block");
            match key.to_ascii_lowercase().as_str() {
                "host" => blocks.push(Block {
                    patterns: value.split_whitespace().map(String::from).collect(),
                    ..Block::default()
                }),
                // Match blocks need a full evaluator; never apply them
                "match" => blocks.push(Block::default()),
                "hostname" => {
                    block.host_name.get_or_insert(value);
                }
                "user" => {
                    block.user.get_or_insert(value);
                }
                "port" => {
                    let port = value
                        .parse()
                        .with_context(|| format!("line {}: bad Port {value:?}", n + 1))?;
                    block.port.get_or_insert(port);
                }
                _ => {}
            }
        }
        Ok(SshConfig { blocks })
    }

    pub fn lookup(&self, alias: &str) -> Entry {
        let mut e = Entry::default();
        for b in self.blocks.iter().filter(|b| b.matches(alias)) {
            if e.host_name.is_none() {
                e.host_name = b.host_name.as_ref().map(|h| h.replace("%h", alias));
            }
            e.port = e.port.or(b.port);
            if e.user.is_none() {
                e.user = b.user.clone();
            }
        }
        e
    }
}

impl Block {
    fn matches(&self, host: &str) -> bool {
        let negated = self
            .patterns
            .iter()
            .filter_map(|p| p.strip_prefix('!'))
            .any(|p| glob(p, host));
        !negated
            && self
                .patterns
                .iter()
                .any(|p| !p.starts_with('!') && glob(p, host))
    }
}

/// OpenSSH patterns: `*` any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob("*.example.org", "relay.example.org"));
        assert!(glob("relay?", "relay1"));
        assert!(!glob("relay?", "relay"));
        assert!(glob("*", "anything"));
    }

    #[test]
    fn first_value_wins_and_negation_excludes() {
        let c = SshConfig::parse(
            "Host relay !relay-old\n HostName=%h.example.org\n\nHost relay*\n Port 2222\n HostName ignored\n",
        )
        .unwrap();
        let e = c.lookup("relay");
        assert_eq!(e.host_name.as_deref(), Some("relay.example.org"));
        assert_eq!(e.port, Some(2222));
        assert_eq!(c.lookup("relay-old").host_name.as_deref(), Some("ignored"));
    }

    #[test]
    fn bad_port_is_an_error_with_the_line() {
        let err = SshConfig::parse("Host x\n Port abc\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
