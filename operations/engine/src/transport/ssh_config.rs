//! `~/.ssh/config` as OpenSSH reads it, for the keys a deploy needs: HostName, Port, User,
//! IdentityFile, IdentitiesOnly, ProxyJump, and Include.
//!
//! Semantics followed from ssh_config(5): lines apply when their `Host` patterns match the
//! alias (`*`, `?`, `!` negation, several patterns per line); for each key the first value
//! found wins, except IdentityFile, whose values add up in order; `Include` reads files
//! (relative names below `~/.ssh`, globs in the file name) as if their lines stood in place,
//! under the condition of the block around it. `Match all`, `Match host`, `Match
//! originalhost` and `Match user` are evaluated (with `!` negation); a `Match` with any other
//! criterion (exec, canonical, final, localuser, ...) never applies, so its block is skipped
//! rather than misread. Other keys are ignored.
//!
//! Own parser rather than a crate: the crates found parse every option into typed fields for
//! their own client; what a deploy needs is these few keys with OpenSSH's exact order rules,
//! and errors that name the file and line.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// OpenSSH's limit for nested Include.
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

/// Lines under one `Host` or `Match` condition, in file order.
#[derive(Debug)]
struct Block {
    condition: Condition,
    settings: Vec<Setting>,
}

#[derive(Debug, Clone)]
enum Condition {
    Host(Vec<String>),
    Match(Vec<Criterion>),
    /// a Match criterion this parser cannot evaluate: the block never applies
    Never,
}

#[derive(Debug, Clone)]
struct Criterion {
    negated: bool,
    kind: CriterionKind,
}

#[derive(Debug, Clone)]
enum CriterionKind {
    All,
    /// the host name after HostName was applied
    Host(Vec<String>),
    /// the name as given on the command line
    OriginalHost(Vec<String>),
    User(Vec<String>),
}

#[derive(Debug, Clone)]
struct Setting {
    key: Key,
    /// checked when read: Port and IdentitiesOnly values parse
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    HostName,
    Port,
    User,
    IdentityFile,
    IdentitiesOnly,
    ProxyJump,
}

/// What the config says about one alias. Values are as written, except HostName's `%h`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entry {
    pub host_name: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// unexpanded (`~`, `%d`, `%h`, ...): see [`expand_path`]
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    /// `none` already turned into `Some("none")`: the caller decides (first value wins)
    pub proxy_jump: Option<String>,
}

impl SshConfig {
    /// Reads `path`; relative Include names are looked up below `home/.ssh`. A missing file
    /// is an empty config.
    pub fn read(path: &Path, home: Option<&Path>) -> anyhow::Result<SshConfig> {
        let mut config = SshConfig::default();
        let start = Condition::Host(vec!["*".into()]);
        match std::fs::read_to_string(path) {
            Ok(text) => config.parse_into(&text, &path.display().to_string(), start, home, 0)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        Ok(config)
    }

    #[cfg(test)]
    pub fn parse(text: &str) -> anyhow::Result<SshConfig> {
        let mut config = SshConfig::default();
        config.parse_into(text, "config", Condition::Host(vec!["*".into()]), None, 0)?;
        Ok(config)
    }

    fn parse_into(
        &mut self,
        text: &str,
        file: &str,
        start: Condition,
        home: Option<&Path>,
        depth: usize,
    ) -> anyhow::Result<()> {
        let mut current = start;
        self.open(current.clone());
        for (n, raw) in text.lines().enumerate() {
            let at = format!("{file}:{}", n + 1);
            let words = split_words(raw).with_context(|| format!("{at}: {raw:?}"))?;
            let Some((key, args)) = words.split_first() else {
                continue;
            };
            match key.to_ascii_lowercase().as_str() {
                "host" => {
                    if args.is_empty() {
                        bail!("{at}: Host without a pattern");
                    }
                    current = Condition::Host(args.to_vec());
                    self.open(current.clone());
                }
                "match" => {
                    current = parse_match(args).with_context(|| format!("{at}: bad Match"))?;
                    self.open(current.clone());
                }
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        bail!("{at}: Include nested more than {MAX_INCLUDE_DEPTH} deep");
                    }
                    for pattern in args {
                        for path in include_files(pattern, home)
                            .with_context(|| format!("{at}: Include {pattern}"))?
                        {
                            let text = std::fs::read_to_string(&path)
                                .with_context(|| format!("{at}: cannot read {}", path.display()))?;
                            let name = path.display().to_string();
                            self.parse_into(&text, &name, current.clone(), home, depth + 1)?;
                        }
                    }
                    // the included file may have opened blocks of its own; what follows
                    // the Include belongs to the block around it again
                    self.open(current.clone());
                }
                other => {
                    let Some(key) = Key::from_name(other) else {
                        continue;
                    };
                    let Some(value) = args.first() else {
                        bail!("{at}: {} without a value", words[0]);
                    };
                    if key == Key::Port {
                        parse_port(value).with_context(|| format!("{at}: bad Port"))?;
                    }
                    if key == Key::IdentitiesOnly {
                        parse_yes_no(value).with_context(|| format!("{at}: bad IdentitiesOnly"))?;
                    }
                    let value = if key == Key::ProxyJump {
                        // several hops may be written with spaces after the commas
                        args.join("")
                    } else {
                        value.clone()
                    };
                    self.blocks
                        .last_mut()
                        .expect("a block is open")
                        .settings
                        .push(Setting { key, value });
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, condition: Condition) {
        self.blocks.push(Block {
            condition,
            settings: Vec::new(),
        });
    }

    /// The settings for `alias`, in OpenSSH's order: first value wins.
    pub fn lookup(&self, alias: &str) -> Entry {
        let mut e = Entry::default();
        for block in &self.blocks {
            if !block.condition.applies(alias, &e) {
                continue;
            }
            for s in &block.settings {
                match s.key {
                    Key::HostName => {
                        e.host_name
                            .get_or_insert_with(|| s.value.replace("%h", alias).replace("%%", "%"));
                    }
                    Key::Port => {
                        e.port = e.port.or(parse_port(&s.value).ok());
                    }
                    Key::User => {
                        e.user.get_or_insert_with(|| s.value.clone());
                    }
                    Key::IdentityFile => e.identity_files.push(s.value.clone()),
                    Key::IdentitiesOnly => {
                        e.identities_only = e.identities_only.or(parse_yes_no(&s.value).ok());
                    }
                    Key::ProxyJump => {
                        e.proxy_jump.get_or_insert_with(|| s.value.clone());
                    }
                }
            }
        }
        e
    }
}

impl Key {
    fn from_name(lowercase: &str) -> Option<Key> {
        Some(match lowercase {
            "hostname" => Key::HostName,
            "port" => Key::Port,
            "user" => Key::User,
            "identityfile" => Key::IdentityFile,
            "identitiesonly" => Key::IdentitiesOnly,
            "proxyjump" => Key::ProxyJump,
            _ => return None,
        })
    }
}

impl Condition {
    fn applies(&self, alias: &str, so_far: &Entry) -> bool {
        match self {
            Condition::Host(patterns) => matches_list(patterns, alias),
            Condition::Never => false,
            Condition::Match(criteria) => criteria.iter().all(|c| {
                let hit = match &c.kind {
                    CriterionKind::All => true,
                    CriterionKind::Host(p) => {
                        matches_list(p, so_far.host_name.as_deref().unwrap_or(alias))
                    }
                    CriterionKind::OriginalHost(p) => matches_list(p, alias),
                    CriterionKind::User(p) => {
                        matches_list(p, so_far.user.as_deref().unwrap_or("root"))
                    }
                };
                hit != c.negated
            }),
        }
    }
}

fn parse_match(args: &[String]) -> anyhow::Result<Condition> {
    let mut criteria = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (negated, name) = match word.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, word.as_str()),
        };
        let name = name.to_ascii_lowercase();
        let kind = match name.as_str() {
            "all" => CriterionKind::All,
            "canonical" | "final" => return Ok(Condition::Never),
            _ => {
                let list = words
                    .next()
                    .with_context(|| format!("{name} needs an argument"))?;
                let patterns = list.split(',').map(String::from).collect();
                match name.as_str() {
                    "host" => CriterionKind::Host(patterns),
                    "originalhost" => CriterionKind::OriginalHost(patterns),
                    "user" => CriterionKind::User(patterns),
                    _ => return Ok(Condition::Never),
                }
            }
        };
        criteria.push(Criterion { negated, kind });
    }
    if criteria.is_empty() {
        bail!("no criteria");
    }
    Ok(Condition::Match(criteria))
}

/// A pattern list: no negated pattern may match, and at least one plain one must.
fn matches_list(patterns: &[String], text: &str) -> bool {
    let negated = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .any(|p| glob(p, text));
    !negated
        && patterns
            .iter()
            .any(|p| !p.starts_with('!') && glob(p, text))
}

/// Splits a config line into words: `Key value`, `Key=value` or `Key = value`; double
/// quotes keep spaces; `#` at the start of a word begins a comment.
fn split_words(line: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.trim().chars().peekable();
    let mut first = true;
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        let mut word = String::new();
        let mut quoted = false;
        let mut had_quotes = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
                had_quotes = true;
            } else if !quoted && (c.is_whitespace() || (first && c == '=')) {
                break;
            } else {
                word.push(c);
            }
            chars.next();
        }
        if quoted {
            bail!("unbalanced quotes");
        }
        if first {
            // the key may be followed by `=`, with or without spaces around it
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'=') {
                chars.next();
            }
            first = false;
        }
        if !word.is_empty() || had_quotes {
            words.push(word);
        }
    }
    Ok(words)
}

fn parse_port(value: &str) -> anyhow::Result<u16> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("{value:?} is not a port"),
    }
}

fn parse_yes_no(value: &str) -> anyhow::Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => bail!("{value:?} is neither yes nor no"),
    }
}

/// The files an Include names, in sorted order: `~` is the home directory, a relative name
/// lies below `~/.ssh`, and the last component may hold `*`/`?`. No match is no error.
fn include_files(pattern: &str, home: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let path = if let Some(rest) = pattern.strip_prefix("~/") {
        home.context("HOME is not set")?.join(rest)
    } else if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        home.context("HOME is not set")?.join(".ssh").join(pattern)
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("no file name")?
        .to_string();
    let dir = path.parent().context("no directory")?;
    if dir.to_string_lossy().contains(['*', '?']) {
        bail!("wildcards are supported in the file name only");
    }
    if !name.contains(['*', '?']) {
        return Ok(if path.is_file() { vec![path] } else { vec![] });
    }
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| glob(&name, n)))
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => vec![],
    };
    found.sort();
    Ok(found)
}

/// The values `%`-tokens and `~` stand for in IdentityFile.
pub struct Tokens<'a> {
    pub home: Option<&'a Path>,
    pub local_user: &'a str,
    pub host: &'a str,
    pub remote_user: &'a str,
    pub port: u16,
}

/// Expands `~`, `%d` (home), `%u` (local user), `%h` (host), `%r` (remote user), `%p`
/// (port) and `%%`, as OpenSSH does for IdentityFile.
pub fn expand_path(value: &str, t: &Tokens) -> anyhow::Result<PathBuf> {
    let home = || -> anyhow::Result<String> {
        Ok(t.home
            .context("HOME is not set")?
            .to_string_lossy()
            .into_owned())
    };
    let mut out = String::new();
    let mut rest = value;
    if let Some(r) = value.strip_prefix('~')
        && (r.is_empty() || r.starts_with('/'))
    {
        out.push_str(&home()?);
        rest = r;
    }
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('d') => out.push_str(&home()?),
            Some('u') => out.push_str(t.local_user),
            Some('h') => out.push_str(t.host),
            Some('r') => out.push_str(t.remote_user),
            Some('p') => out.push_str(&t.port.to_string()),
            Some(other) => bail!("IdentityFile {value:?}: unknown token %{other}"),
            None => bail!("IdentityFile {value:?}: ends with %"),
        }
    }
    Ok(PathBuf::from(out))
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

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sshcfg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".ssh/config.d")).unwrap();
        dir
    }

    #[test]
    fn globbing() {
        assert!(glob("*.example.org", "relay.example.org"));
        assert!(glob("relay?", "relay1"));
        assert!(!glob("relay?", "relay"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
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
    fn several_patterns_per_host_line() {
        let c = SshConfig::parse("Host a b? *.x\n User u\n").unwrap();
        for hit in ["a", "b1", "h.x"] {
            assert_eq!(c.lookup(hit).user.as_deref(), Some("u"), "{hit}");
        }
        for miss in ["b", "ab", "x"] {
            assert_eq!(c.lookup(miss).user, None, "{miss}");
        }
    }

    #[test]
    fn only_negated_patterns_match_nothing() {
        let c = SshConfig::parse("Host !a\n User u\n").unwrap();
        assert_eq!(c.lookup("b").user, None);
    }

    #[test]
    fn lines_before_any_host_apply_to_all() {
        let c = SshConfig::parse("User early\nHost x\n User late\n").unwrap();
        assert_eq!(c.lookup("x").user.as_deref(), Some("early"));
    }

    #[test]
    fn key_value_forms_quotes_and_comments() {
        let c = SshConfig::parse(
            "Host x # a comment\n  IdentityFile \"/k/with space\"\n  user = deploy\n  PORT=2200\n",
        )
        .unwrap();
        let e = c.lookup("x");
        assert_eq!(e.identity_files, vec!["/k/with space".to_string()]);
        assert_eq!(e.user.as_deref(), Some("deploy"));
        assert_eq!(e.port, Some(2200));
        assert!(SshConfig::parse("Host x\n HostName \"open\n").is_err());
    }

    #[test]
    fn identity_files_add_up_and_identities_only_first_wins() {
        let c = SshConfig::parse(
            "Host x\n IdentityFile ~/.ssh/a\n IdentitiesOnly yes\nHost *\n IdentityFile ~/.ssh/b\n IdentitiesOnly no\n",
        )
        .unwrap();
        let e = c.lookup("x");
        assert_eq!(e.identity_files, vec!["~/.ssh/a", "~/.ssh/b"]);
        assert_eq!(e.identities_only, Some(true));
        assert!(SshConfig::parse("IdentitiesOnly maybe\n").is_err());
    }

    #[test]
    fn proxy_jump_first_value_wins_and_keeps_hops() {
        let c = SshConfig::parse(
            "Host t\n ProxyJump admin@bastion:2222, inner\nHost *\n ProxyJump other\n",
        )
        .unwrap();
        assert_eq!(
            c.lookup("t").proxy_jump.as_deref(),
            Some("admin@bastion:2222,inner")
        );
        assert_eq!(c.lookup("u").proxy_jump.as_deref(), Some("other"));
        let none = SshConfig::parse("Host t\n ProxyJump none\nHost *\n ProxyJump other\n").unwrap();
        assert_eq!(none.lookup("t").proxy_jump.as_deref(), Some("none"));
    }

    #[test]
    fn match_blocks_are_evaluated_or_skipped() {
        let c = SshConfig::parse(
            "Host t\n HostName t.example.org\n\
             Match exec \"true\"\n User fromexec\n\
             Match canonical\n User fromcanonical\n\
             Match host *.example.org !originalhost other\n User fromhost\n\
             Match all\n User fromall\n Port 2022\n",
        )
        .unwrap();
        let e = c.lookup("t");
        assert_eq!(
            e.user.as_deref(),
            Some("fromhost"),
            "Match host sees HostName"
        );
        assert_eq!(e.port, Some(2022));
        assert_eq!(c.lookup("other").user.as_deref(), Some("fromall"));
        let u = SshConfig::parse("Host a\n User deploy\nMatch user deploy\n Port 2\n").unwrap();
        assert_eq!(u.lookup("a").port, Some(2));
        assert!(SshConfig::parse("Match host\n").is_err());
        assert!(SshConfig::parse("Match\n").is_err());
    }

    #[test]
    fn bad_values_are_errors_with_the_line() {
        let err = SshConfig::parse("Host x\n Port abc\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config:2"), "{err}");
        assert!(SshConfig::parse("Host\n").is_err());
        assert!(SshConfig::parse("Host x\n HostName\n").is_err());
    }

    #[test]
    fn include_relative_to_dot_ssh_with_globs_in_order_under_the_outer_block() {
        let home = tempdir("include");
        let ssh = home.join(".ssh");
        std::fs::write(ssh.join("config.d/20-b"), "Host b\n User from-b\n").unwrap();
        std::fs::write(
            ssh.join("config.d/10-a"),
            "Port 2001\nHost a\n User from-a\n",
        )
        .unwrap();
        std::fs::write(ssh.join("config.d/ignored.txt"), "Host *\n User wrong\n").unwrap();
        std::fs::write(ssh.join("only-x"), "User from-x\n").unwrap();
        std::fs::write(
            ssh.join("config"),
            "Include config.d/??-*\nHost x\n Include only-x ~/.ssh/missing\n HostName x.example\nHost *\n User fallback\n",
        )
        .unwrap();
        let c = SshConfig::read(&ssh.join("config"), Some(&home)).unwrap();
        let a = c.lookup("a");
        assert_eq!((a.user.as_deref(), a.port), (Some("from-a"), Some(2001)));
        assert_eq!(c.lookup("b").user.as_deref(), Some("from-b"));
        let x = c.lookup("x");
        assert_eq!(x.user.as_deref(), Some("from-x"));
        assert_eq!(
            x.host_name.as_deref(),
            Some("x.example"),
            "the Host x block goes on"
        );
        assert_eq!(
            c.lookup("y").user.as_deref(),
            Some("fallback"),
            "only-x is under Host x"
        );
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn include_loops_end_with_an_error() {
        let home = tempdir("loop");
        let ssh = home.join(".ssh");
        std::fs::write(ssh.join("config"), "Include config\n").unwrap();
        let err = SshConfig::read(&ssh.join("config"), Some(&home)).unwrap_err();
        assert!(format!("{err:#}").contains("nested"), "{err:#}");
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn identity_file_tokens() {
        let t = Tokens {
            home: Some(Path::new("/home/op")),
            local_user: "op",
            host: "relay.example",
            remote_user: "root",
            port: 22,
        };
        assert_eq!(
            expand_path("~/.ssh/id_%h", &t).unwrap(),
            PathBuf::from("/home/op/.ssh/id_relay.example")
        );
        assert_eq!(
            expand_path("%d/keys/%u-%r@%h:%p%%", &t).unwrap(),
            PathBuf::from("/home/op/keys/op-root@relay.example:22%")
        );
        assert!(expand_path("/k/%x", &t).is_err());
    }
}
