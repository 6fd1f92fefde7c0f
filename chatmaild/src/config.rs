//! `chatmail.ini`: the single configuration file shared by the deploy tool and every service.
//!
//! The file was historically written for (and read by) Python INI parsers, so the reader
//! reproduces their behaviour rather than rust-ini's defaults: no quote stripping, no
//! backslash escapes, case-insensitive keys, comment lines ignored even when indented, and
//! indented continuation lines joined to the previous value with `\n`.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ini::{Ini, ParseOption};

use crate::error::{Error, Result};
use crate::user::User;

/// Where the deployment puts the file on a relay and where services look by default.
pub const DEFAULT_INI_PATH: &str = "/usr/local/lib/chatmaild/chatmail.ini";

/// How the relay obtains its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Certificate and key are managed outside the relay (`tls_external_cert_and_key`).
    External,
    /// Self-signed certificate: `_`-prefixed domains and bare IPv4 relays cannot get ACME certs.
    SelfSigned,
    /// Let's Encrypt through acmetool.
    Acme,
}

impl TlsMode {
    /// The name used in templates and upstream tooling.
    pub fn as_str(&self) -> &'static str {
        match self {
            TlsMode::External => "external",
            TlsMode::SelfSigned => "self",
            TlsMode::Acme => "acme",
        }
    }
}

/// Parsed `[params]` of a `chatmail.ini`, with defaults applied and derived values computed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (empty for configs built from a string without a path).
    pub inipath: PathBuf,

    /// The raw `mail_domain` value (a DNS name or a bare IPv4 address).
    pub mail_domain_bare: String,
    /// Domain part of addresses: the raw value, or `[ip]` on IPv4 relays.
    pub mail_domain: String,
    /// Set when `mail_domain` is a strict dotted-quad IPv4 address.
    pub ipv4_relay: Option<Ipv4Addr>,
    /// Postfix `myhostname`: raw domain, or the reverse-pointer name on IPv4 relays.
    pub postfix_myhostname: String,

    pub max_user_send_per_minute: u32,
    pub max_user_send_burst_size: u32,
    /// The quota as written in the file (e.g. `500M`).
    pub max_mailbox_size: String,
    /// The quota in MiB.
    pub max_mailbox_size_mb: u64,
    pub max_message_size: u64,
    pub delete_mails_after: u32,
    pub delete_large_after: u32,
    pub delete_inactive_users_after: u32,
    pub username_min_length: usize,
    pub username_max_length: usize,
    pub password_min_length: usize,

    pub max_load_1m: f64,
    pub min_available_memory_mb: u64,
    pub min_free_disk_space_mb: u64,
    pub max_imap_connections: u32,
    pub max_smtp_connections: u32,

    pub www_folder: String,
    pub filtermail_smtp_port: u16,
    pub filtermail_smtp_port_incoming: u16,
    pub filtermail_http_port_incoming: u16,
    pub filtermail_lmtp_port_transport: u16,
    pub postfix_reinject_port: u16,
    pub postfix_reinject_port_incoming: u16,
    /// Address filtermail's listeners bind to (a filtermail-only key). Only an IP: binding
    /// to a name would depend on DNS at boot.
    pub filtermail_host: IpAddr,
    /// Where filtermail re-injects (a filtermail-only key): an IP or a host name, which
    /// filtermail resolves once at start.
    pub postfix_host: String,
    pub mtail_address: Option<String>,
    pub disable_ipv6: bool,
    pub acme_email: String,
    pub imap_rawlog: bool,
    pub imap_compress: bool,
    pub turn_socket_path: PathBuf,
    /// URL advertised to clients; empty means "advertise nothing".
    pub iroh_relay: String,
    /// Whether the local iroh-relay should run (only when `iroh_relay` is absent).
    pub enable_iroh_relay: bool,
    /// Where chatmail-metadata POSTs device tokens (a chatmail-deploy key; upstream has the
    /// URL built in). Tests and self-hosted notification proxies set it.
    pub notification_url: String,

    pub privacy_postal: Option<String>,
    pub privacy_mail: Option<String>,
    pub privacy_pdo: Option<String>,
    pub privacy_supervisor: Option<String>,

    pub tls_cert_mode: TlsMode,
    pub tls_cert_path: String,
    pub tls_key_path: String,

    /// Root of all per-address Maildirs.
    pub mailboxes_dir: PathBuf,
    /// Legacy SQLite password database, only read by a one-time migration.
    pub passdb_path: PathBuf,

    /// Keys present in the file that no component uses, in file order.
    pub unused_keys: Vec<String>,
}

impl Config {
    /// Read and validate a `chatmail.ini`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text, path)
    }

    /// Parse ini text; `path` is only used for error messages and [`Config::inipath`].
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let params = read_params(text, path)?;
        Config::from_params(params, path)
    }

    /// Build a config from already-split `[params]` entries (keys must be lower-case).
    pub fn from_params(params: Vec<(String, String)>, path: &Path) -> Result<Config> {
        let mut p = Params {
            path,
            values: params.iter().cloned().collect(),
            order: params.iter().map(|(k, _)| k.clone()).collect(),
            used: HashSet::new(),
        };

        let raw_domain = p.take("mail_domain").ok_or_else(|| Error::MissingKey {
            path: path.to_owned(),
            key: "mail_domain".into(),
        })?;
        let ipv4_relay = parse_strict_ipv4(&raw_domain);
        let (mail_domain, postfix_myhostname) = match ipv4_relay {
            Some(ip) => (format!("[{ip}]"), reverse_pointer(ip)),
            None => (raw_domain.clone(), raw_domain.clone()),
        };

        let max_mailbox_size = p.take("max_mailbox_size").unwrap_or_else(|| "500M".into());
        let max_mailbox_size_mb = p.size_mb_of("max_mailbox_size", &max_mailbox_size)?;

        let iroh = p.take("iroh_relay");
        let enable_iroh_relay = iroh.is_none();
        let iroh_relay = match iroh {
            None => format!("https://{raw_domain}"),
            Some(v) => v.trim().to_owned(),
        };

        let external = p
            .take("tls_external_cert_and_key")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let (tls_cert_mode, tls_cert_path, tls_key_path) = if !external.is_empty() {
            let parts: Vec<&str> = external.split_whitespace().collect();
            let [cert, key] = parts[..] else {
                return Err(p.invalid(
                    "tls_external_cert_and_key",
                    &external,
                    "must have two space-separated paths: CERT_PATH KEY_PATH",
                ));
            };
            (TlsMode::External, cert.to_owned(), key.to_owned())
        } else if raw_domain.starts_with('_') || ipv4_relay.is_some() {
            (
                TlsMode::SelfSigned,
                "/etc/ssl/certs/mailserver.pem".to_owned(),
                "/etc/ssl/private/mailserver.key".to_owned(),
            )
        } else {
            (
                TlsMode::Acme,
                format!("/var/lib/acme/live/{raw_domain}/fullchain"),
                format!("/var/lib/acme/live/{raw_domain}/privkey"),
            )
        };

        let config = Config {
            inipath: path.to_owned(),
            max_user_send_per_minute: p.int("max_user_send_per_minute", 60)?,
            max_user_send_burst_size: p.int("max_user_send_burst_size", 10)?,
            max_mailbox_size,
            max_mailbox_size_mb,
            max_message_size: p.int("max_message_size", 31_457_280)?,
            delete_mails_after: p.int("delete_mails_after", 20)?,
            delete_large_after: p.int("delete_large_after", 7)?,
            delete_inactive_users_after: p.int("delete_inactive_users_after", 90)?,
            username_min_length: p.int("username_min_length", 9)?,
            username_max_length: p.int("username_max_length", 9)?,
            password_min_length: p.int("password_min_length", 9)?,
            max_load_1m: p.float("max_load_1m", 5.0)?,
            min_available_memory_mb: p.size_mb("min_available_memory", "200M")?,
            min_free_disk_space_mb: p.size_mb("min_free_disk_space", "1G")?,
            max_imap_connections: p.int("max_imap_connections", 10_000)?,
            max_smtp_connections: p.int("max_smtp_connections", 1000)?,
            www_folder: p.string("www_folder", ""),
            filtermail_smtp_port: p.int("filtermail_smtp_port", 10080)?,
            filtermail_smtp_port_incoming: p.int("filtermail_smtp_port_incoming", 10081)?,
            filtermail_http_port_incoming: p.int("filtermail_http_port_incoming", 10082)?,
            filtermail_lmtp_port_transport: p.int("filtermail_lmtp_port_transport", 10083)?,
            postfix_reinject_port: p.int("postfix_reinject_port", 10025)?,
            postfix_reinject_port_incoming: p.int("postfix_reinject_port_incoming", 10026)?,
            filtermail_host: p.ip("filtermail_host", IpAddr::V4(Ipv4Addr::LOCALHOST))?,
            postfix_host: p.host("postfix_host", "127.0.0.1")?,
            mtail_address: p.take("mtail_address"),
            disable_ipv6: p.boolean("disable_ipv6"),
            acme_email: p.string("acme_email", ""),
            imap_rawlog: p.boolean("imap_rawlog"),
            imap_compress: p.boolean("imap_compress"),
            turn_socket_path: p
                .string("turn_socket_path", "/run/chatmail-turn/turn.socket")
                .into(),
            iroh_relay,
            enable_iroh_relay,
            notification_url: p.string(
                "notification_url",
                "https://notifications.delta.chat/notify",
            ),
            privacy_postal: p.take("privacy_postal"),
            privacy_mail: p.take("privacy_mail"),
            privacy_pdo: p.take("privacy_pdo"),
            privacy_supervisor: p.take("privacy_supervisor"),
            tls_cert_mode,
            tls_cert_path,
            tls_key_path,
            mailboxes_dir: p
                .string("mailboxes_dir", &format!("/home/vmail/mail/{raw_domain}"))
                .trim()
                .into(),
            passdb_path: p.string("passdb_path", "/home/vmail/passdb.sqlite").into(),
            unused_keys: Vec::new(),
            mail_domain_bare: raw_domain,
            mail_domain,
            ipv4_relay,
            postfix_myhostname,
        };
        let unused_keys = p.unused();
        Ok(Config {
            unused_keys,
            ..config
        })
    }

    /// Per-address paths; refuses addresses that could escape `mailboxes_dir`.
    pub fn get_user(&self, addr: &str) -> Result<User> {
        if addr.is_empty() || !addr.contains('@') || addr.contains('/') {
            return Err(Error::InvalidAddress(addr.to_owned()));
        }
        Ok(User::new(self.mailboxes_dir.join(addr), addr))
    }

    /// `@<mail_domain>`: the suffix every local address must end with.
    pub fn address_suffix(&self) -> String {
        format!("@{}", self.mail_domain)
    }

    /// Whether the relay uses self-signed TLS (underscore domain or IPv4 relay).
    pub fn is_self_signed(&self) -> bool {
        self.tls_cert_mode == TlsMode::SelfSigned
    }

    /// Quota threshold (MiB) at which mail is expired: 70 % of the mailbox quota.
    pub fn quota_expire_target_mb(&self) -> u64 {
        self.max_mailbox_size_mb * 70 / 100
    }
}

/// Split the file into `[params]` entries the way the Python readers see them.
fn read_params(text: &str, path: &Path) -> Result<Vec<(String, String)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // rust-ini would glue indented comment lines and blank lines into multi-line values,
    // whereas the Python parsers skip them; drop them up front but remember the original
    // line numbers for error messages.
    let syntax = |message: String| Error::IniSyntax {
        path: path.to_owned(),
        message,
    };
    let mut cleaned = String::with_capacity(text.len());
    let mut original_line = Vec::new();
    // rust-ini reads a key up to the next '=' even across line breaks, so lines that are
    // neither sections, settings nor continuations are rejected here, as Python did.
    let mut after_setting = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let n = i + 1;
        if t.len() != line.len() {
            if !after_setting {
                return Err(syntax(format!(
                    "line {n}: continuation line without a setting before it"
                )));
            }
        } else if t.starts_with('[') {
            after_setting = false;
        } else {
            match t.find(['=', ':']) {
                Some(pos) if !t[..pos].trim().is_empty() => after_setting = true,
                _ => {
                    return Err(syntax(format!(
                        "line {n}: expected 'key = value', found {t:?}"
                    )));
                }
            }
        }
        cleaned.push_str(line);
        cleaned.push('\n');
        original_line.push(n);
    }
    let opt = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        ..ParseOption::default()
    };
    let ini = Ini::load_from_str_opt(&cleaned, opt).map_err(|e| {
        let line = original_line
            .get(e.line.saturating_sub(1))
            .map_or_else(|| "end of file".to_owned(), |n| format!("line {n}"));
        syntax(format!("{line}: {}", e.msg))
    })?;
    let mut sections = ini.section_all(Some("params"));
    let section = sections.next().ok_or_else(|| Error::MissingSection {
        path: path.to_owned(),
    })?;
    if sections.next().is_some() {
        return Err(syntax("section [params] appears more than once".into()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (key, value) in section.iter() {
        let key = key.trim().to_lowercase();
        if !seen.insert(key.clone()) {
            return Err(Error::DuplicateKey {
                path: path.to_owned(),
                key,
            });
        }
        out.push((key, value.trim().to_owned()));
    }
    Ok(out)
}

/// Typed access to the raw values that remembers which keys were consumed.
struct Params<'a> {
    path: &'a Path,
    values: BTreeMap<String, String>,
    order: Vec<String>,
    used: HashSet<String>,
}

impl Params<'_> {
    fn take(&mut self, key: &str) -> Option<String> {
        self.used.insert(key.to_owned());
        self.values.get(key).cloned()
    }

    fn string(&mut self, key: &str, default: &str) -> String {
        self.take(key).unwrap_or_else(|| default.to_owned())
    }

    /// Booleans are true only for (case-insensitive) `true`, exactly like upstream.
    fn boolean(&mut self, key: &str) -> bool {
        self.take(key).is_some_and(|v| v.to_lowercase() == "true")
    }

    fn int<T>(&mut self, key: &str, default: T) -> Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.take(key) {
            None => Ok(default),
            Some(v) => parse_int(&v).map_err(|reason| self.invalid(key, &v, &reason)),
        }
    }

    fn ip(&mut self, key: &str, default: IpAddr) -> Result<IpAddr> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| self.invalid(key, &v, "not an IPv4 or IPv6 address")),
        }
    }

    /// A host name or IP; only checked for being a single non-empty word, resolution
    /// happens where the value is used.
    fn host(&mut self, key: &str, default: &str) -> Result<String> {
        match self.take(key) {
            None => Ok(default.to_owned()),
            Some(v) if v.trim().is_empty() || v.trim().contains(char::is_whitespace) => {
                Err(self.invalid(key, &v, "expected one host name or IP address"))
            }
            Some(v) => Ok(v.trim().to_owned()),
        }
    }

    fn float(&mut self, key: &str, default: f64) -> Result<f64> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .map_err(|e| self.invalid(key, &v, &format!("not a number ({e})"))),
        }
    }

    fn size_mb(&mut self, key: &str, default: &str) -> Result<u64> {
        let v = self.string(key, default);
        self.size_mb_of(key, &v)
    }

    fn size_mb_of(&self, key: &str, value: &str) -> Result<u64> {
        parse_size_mb(value).ok_or_else(|| {
            self.invalid(
                key,
                value,
                "expected a size like 500M, 2G or a number of megabytes",
            )
        })
    }

    fn invalid(&self, key: &str, value: &str, reason: &str) -> Error {
        Error::InvalidValue {
            path: self.path.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn unused(&self) -> Vec<String> {
        self.order
            .iter()
            .filter(|k| !self.used.contains(*k))
            .cloned()
            .collect()
    }
}

/// Decimal integer as Python's `int()` accepts it: surrounding whitespace, a sign, and
/// single underscores between digits are allowed.
fn parse_int<T>(value: &str) -> std::result::Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let v = value.trim();
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Err("not an integer".into());
    }
    let plain: String = v.chars().filter(|&c| c != '_' && c != '+').collect();
    plain
        .parse::<T>()
        .map_err(|e| format!("out of range ({e})"))
}

/// Size in MiB: `500M` → 500, `2G` → 2048, `100MB` → 100, `256` → 256.
pub fn parse_size_mb(value: &str) -> Option<u64> {
    let upper = value.trim().to_uppercase();
    let v = upper.strip_suffix('B').unwrap_or(&upper);
    if let Some(g) = v.strip_suffix('G') {
        parse_int::<u64>(g).ok()?.checked_mul(1024)
    } else if let Some(m) = v.strip_suffix('M') {
        parse_int(m).ok()
    } else {
        parse_int(v).ok()
    }
}

/// Strict dotted quad (no leading zeros, no shorthand forms).
pub fn parse_strict_ipv4(value: &str) -> Option<Ipv4Addr> {
    value.parse::<Ipv4Addr>().ok()
}

/// `203.0.113.7` → `7.113.0.203.in-addr.arpa`.
pub fn reverse_pointer(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, "test.ini")
    }

    fn minimal(domain: &str, extra: &str) -> Config {
        parse(&format!("[params]\nmail_domain = {domain}\n{extra}")).unwrap()
    }

    #[test]
    fn defaults() {
        let c = minimal("chat.example.org", "");
        assert_eq!(c.mail_domain, "chat.example.org");
        assert_eq!(c.mail_domain_bare, "chat.example.org");
        assert_eq!(c.postfix_myhostname, "chat.example.org");
        assert_eq!(c.ipv4_relay, None);
        assert_eq!(c.max_user_send_per_minute, 60);
        assert_eq!(c.max_user_send_burst_size, 10);
        assert_eq!(c.max_mailbox_size, "500M");
        assert_eq!(c.max_mailbox_size_mb, 500);
        assert_eq!(c.max_message_size, 31_457_280);
        assert_eq!(c.delete_mails_after, 20);
        assert_eq!(c.delete_large_after, 7);
        assert_eq!(c.delete_inactive_users_after, 90);
        assert_eq!(c.username_min_length, 9);
        assert_eq!(c.username_max_length, 9);
        assert_eq!(c.password_min_length, 9);
        assert_eq!(c.max_load_1m, 5.0);
        assert_eq!(c.min_available_memory_mb, 200);
        assert_eq!(c.min_free_disk_space_mb, 1024);
        assert_eq!(c.max_imap_connections, 10_000);
        assert_eq!(c.max_smtp_connections, 1000);
        assert_eq!(c.www_folder, "");
        assert_eq!(c.filtermail_smtp_port, 10080);
        assert_eq!(c.filtermail_smtp_port_incoming, 10081);
        assert_eq!(c.filtermail_http_port_incoming, 10082);
        assert_eq!(c.filtermail_lmtp_port_transport, 10083);
        assert_eq!(c.postfix_reinject_port, 10025);
        assert_eq!(c.postfix_reinject_port_incoming, 10026);
        assert_eq!(c.filtermail_host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.postfix_host, "127.0.0.1");
        assert_eq!(c.mtail_address, None);
        assert!(!c.disable_ipv6);
        assert_eq!(c.acme_email, "");
        assert!(!c.imap_rawlog);
        assert!(!c.imap_compress);
        assert_eq!(
            c.turn_socket_path,
            PathBuf::from("/run/chatmail-turn/turn.socket")
        );
        assert_eq!(c.iroh_relay, "https://chat.example.org");
        assert!(c.enable_iroh_relay);
        assert_eq!(c.privacy_postal, None);
        assert_eq!(c.privacy_mail, None);
        assert_eq!(c.privacy_pdo, None);
        assert_eq!(c.privacy_supervisor, None);
        assert_eq!(c.tls_cert_mode, TlsMode::Acme);
        assert_eq!(
            c.tls_cert_path,
            "/var/lib/acme/live/chat.example.org/fullchain"
        );
        assert_eq!(
            c.tls_key_path,
            "/var/lib/acme/live/chat.example.org/privkey"
        );
        assert_eq!(
            c.mailboxes_dir,
            PathBuf::from("/home/vmail/mail/chat.example.org")
        );
        assert_eq!(c.passdb_path, PathBuf::from("/home/vmail/passdb.sqlite"));
        assert!(c.unused_keys.is_empty());
        assert_eq!(c.quota_expire_target_mb(), 350);
        assert_eq!(c.address_suffix(), "@chat.example.org");
    }

    #[test]
    fn overrides_are_typed() {
        let c = minimal(
            "chat.example.org",
            "max_user_send_per_minute = 37\nmax_message_size=10000\nmax_load_1m = 2.5\n\
             min_available_memory = 1g\nmin_free_disk_space = 100MB\nmax_mailbox_size = 2G\n\
             mtail_address = 127.0.0.1\nwww_folder = disabled\nacme_email = a@b.c\n\
             privacy_mail = privacy@example.org\nprivacy_postal =\n\
             mailboxes_dir =  /tmp/mb  \npassdb_path = /tmp/passdb.sqlite\n\
             turn_socket_path = /tmp/turn.sock\nusername_min_length = 3\n\
             username_max_length = 20\npassword_min_length = 12\n",
        );
        assert_eq!(c.max_user_send_per_minute, 37);
        assert_eq!(c.max_message_size, 10000);
        assert_eq!(c.max_load_1m, 2.5);
        assert_eq!(c.min_available_memory_mb, 1024);
        assert_eq!(c.min_free_disk_space_mb, 100);
        assert_eq!(c.max_mailbox_size, "2G");
        assert_eq!(c.max_mailbox_size_mb, 2048);
        assert_eq!(c.quota_expire_target_mb(), 1433);
        assert_eq!(c.mtail_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.www_folder, "disabled");
        assert_eq!(c.acme_email, "a@b.c");
        assert_eq!(c.privacy_mail.as_deref(), Some("privacy@example.org"));
        assert_eq!(c.privacy_postal.as_deref(), Some(""));
        assert_eq!(c.mailboxes_dir, PathBuf::from("/tmp/mb"));
        assert_eq!(c.passdb_path, PathBuf::from("/tmp/passdb.sqlite"));
        assert_eq!(c.turn_socket_path, PathBuf::from("/tmp/turn.sock"));
        assert_eq!(c.username_min_length, 3);
        assert_eq!(c.username_max_length, 20);
        assert_eq!(c.password_min_length, 12);
    }

    #[test]
    fn filtermail_hosts() {
        let c = minimal(
            "chat.example.org",
            "filtermail_host = ::1\npostfix_host =  mx.internal.example \n",
        );
        assert_eq!(c.filtermail_host, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(c.postfix_host, "mx.internal.example");
        assert!(c.unused_keys.is_empty());
        let c = minimal("chat.example.org", "filtermail_host = 0.0.0.0\n");
        assert_eq!(c.filtermail_host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        for bad in [
            "filtermail_host = localhost",
            "filtermail_host = 127.0.0.1:10080",
            "postfix_host =",
            "postfix_host = a b",
        ] {
            let err = parse(&format!("[params]\nmail_domain = x.org\n{bad}\n")).unwrap_err();
            assert!(matches!(err, Error::InvalidValue { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn ipv4_relay_derivations() {
        let c = minimal("203.0.113.7", "");
        assert_eq!(c.ipv4_relay, Some(Ipv4Addr::new(203, 0, 113, 7)));
        assert_eq!(c.mail_domain, "[203.0.113.7]");
        assert_eq!(c.mail_domain_bare, "203.0.113.7");
        assert_eq!(c.postfix_myhostname, "7.113.0.203.in-addr.arpa");
        assert_eq!(c.tls_cert_mode, TlsMode::SelfSigned);
        assert!(c.is_self_signed());
        // The mailbox directory uses the bare IP, not the bracketed form.
        assert_eq!(
            c.mailboxes_dir,
            PathBuf::from("/home/vmail/mail/203.0.113.7")
        );
        assert_eq!(c.iroh_relay, "https://203.0.113.7");
        assert_eq!(c.address_suffix(), "@[203.0.113.7]");
    }

    #[test]
    fn ipv4_detection_is_strict() {
        for not_ip in [
            "12394142",
            "fe::1",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.256",
            "a.b.c.d",
        ] {
            assert_eq!(parse_strict_ipv4(not_ip), None, "{not_ip}");
        }
        assert_eq!(
            parse_strict_ipv4("1.3.3.7"),
            Some(Ipv4Addr::new(1, 3, 3, 7))
        );
    }

    #[test]
    fn tls_modes() {
        let c = minimal("_test.example.org", "");
        assert_eq!(c.tls_cert_mode, TlsMode::SelfSigned);
        assert_eq!(c.tls_cert_mode.as_str(), "self");
        assert_eq!(c.tls_cert_path, "/etc/ssl/certs/mailserver.pem");
        assert_eq!(c.tls_key_path, "/etc/ssl/private/mailserver.key");

        let ext = "tls_external_cert_and_key = /certs/fullchain.pem   /certs/privkey.pem";
        for domain in ["chat.example.org", "_test.example.org", "1.2.3.4"] {
            let c = minimal(domain, ext);
            assert_eq!(c.tls_cert_mode, TlsMode::External, "{domain}");
            assert_eq!(c.tls_cert_mode.as_str(), "external");
            assert_eq!(c.tls_cert_path, "/certs/fullchain.pem");
            assert_eq!(c.tls_key_path, "/certs/privkey.pem");
        }
        // Empty means "not set".
        let c = minimal("chat.example.org", "tls_external_cert_and_key =");
        assert_eq!(c.tls_cert_mode, TlsMode::Acme);
        assert_eq!(c.tls_cert_mode.as_str(), "acme");
    }

    #[test]
    fn tls_external_needs_two_paths() {
        for bad in ["/only/one", "/a /b /c"] {
            let err = parse(&format!(
                "[params]\nmail_domain = x.org\ntls_external_cert_and_key = {bad}\n"
            ))
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("tls_external_cert_and_key"), "{msg}");
            assert!(msg.contains("two space-separated paths"), "{msg}");
        }
    }

    #[test]
    fn iroh_relay_presence_semantics() {
        let c = minimal("chat.example.org", "iroh_relay = https://iroh.example.net ");
        assert_eq!(c.iroh_relay, "https://iroh.example.net");
        assert!(!c.enable_iroh_relay);
        let c = minimal("chat.example.org", "iroh_relay =");
        assert_eq!(c.iroh_relay, "");
        assert!(!c.enable_iroh_relay);
    }

    #[test]
    fn booleans_only_accept_true() {
        for t in ["true", "True", "TRUE"] {
            let c = minimal(
                "x.org",
                &format!("disable_ipv6 = {t}\nimap_rawlog={t}\nimap_compress = {t}"),
            );
            assert!(c.disable_ipv6 && c.imap_rawlog && c.imap_compress, "{t}");
        }
        for f in ["yes", "1", "on", "", "false", "truee"] {
            let c = minimal("x.org", &format!("disable_ipv6 = {f}\nimap_rawlog={f}"));
            assert!(!c.disable_ipv6 && !c.imap_rawlog, "{f:?}");
        }
    }

    #[test]
    fn unused_keys_are_reported_in_order() {
        let c = minimal(
            "chat.example.org",
            "passthrough_senders = x@y.org\nfoo = 1\npassthrough_recipients = z@y.org",
        );
        assert_eq!(
            c.unused_keys,
            ["passthrough_senders", "foo", "passthrough_recipients"]
        );
    }

    #[test]
    fn keys_are_case_insensitive() {
        let c = parse("[params]\nMail_Domain = chat.example.org\nMAX_MESSAGE_SIZE = 5\n").unwrap();
        assert_eq!(c.mail_domain, "chat.example.org");
        assert_eq!(c.max_message_size, 5);
        assert!(c.unused_keys.is_empty());
    }

    #[test]
    fn no_quote_or_escape_processing() {
        let c = minimal(
            "x.org",
            "privacy_postal = \"Some Street 1\"\nprivacy_pdo = 'a'\\nb\\\\c\n",
        );
        assert_eq!(c.privacy_postal.as_deref(), Some("\"Some Street 1\""));
        assert_eq!(c.privacy_pdo.as_deref(), Some("'a'\\nb\\\\c"));
    }

    #[test]
    fn continuation_lines_are_joined() {
        let c = minimal(
            "x.org",
            "privacy_postal = Example Ltd\n    Some Street 1\n\n\t12345 Town\n  # a comment\n\
             privacy_mail = a@x.org\n",
        );
        assert_eq!(
            c.privacy_postal.as_deref(),
            Some("Example Ltd\nSome Street 1\n12345 Town")
        );
        assert_eq!(c.privacy_mail.as_deref(), Some("a@x.org"));
    }

    #[test]
    fn comments_and_other_sections_are_ignored() {
        let c = parse(
            "# leading comment\n; other comment\n[other]\nmail_domain = wrong.org\n\
             [params]\n#max_message_size = 1\n  ;indented = comment\nmail_domain = right.org\n",
        )
        .unwrap();
        assert_eq!(c.mail_domain, "right.org");
        assert_eq!(c.max_message_size, 31_457_280);
    }

    #[test]
    fn value_may_contain_hash_and_equals() {
        let c = minimal("x.org", "privacy_supervisor = a=b # not a comment");
        assert_eq!(c.privacy_supervisor.as_deref(), Some("a=b # not a comment"));
    }

    #[test]
    fn colon_separator_and_crlf() {
        let c = parse("[params]\r\nmail_domain: x.org\r\nmax_message_size = 7\r\n").unwrap();
        assert_eq!(c.mail_domain, "x.org");
        assert_eq!(c.max_message_size, 7);
    }

    #[test]
    fn missing_section_and_domain() {
        let err = parse("mail_domain = x.org\n").unwrap_err();
        assert!(matches!(err, Error::MissingSection { .. }), "{err}");
        assert!(err.to_string().contains("[params]"));
        let err = parse("[params]\nmax_message_size = 1\n").unwrap_err();
        assert!(matches!(err, Error::MissingKey { .. }), "{err}");
        assert!(err.to_string().contains("mail_domain"));
    }

    #[test]
    fn syntax_errors_name_the_original_line() {
        let err = parse("# comment\n\n[params]\nmail_domain = x\n\n# c\ngarbage line\nfoo = 1\n")
            .unwrap_err();
        assert!(matches!(err, Error::IniSyntax { .. }), "{err}");
        assert!(err.to_string().contains("line 7"), "{err}");
        let err = parse("[params]\nmail_domain = x\n[params]\nfoo = 1\n").unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
        let err = parse("[params\nmail_domain = x\n").unwrap_err();
        assert!(matches!(err, Error::IniSyntax { .. }), "{err}");
        for bad in [
            "[params]\n  indented = first\n",
            "[params]\n= x\n",
            "[params]\nlonely\n",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains("line 2"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(
            parse("\u{feff}[params]\nmail_domain = x.org\n")
                .unwrap()
                .mail_domain,
            "x.org"
        );
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse("[params]\nmail_domain = a.org\nMAIL_DOMAIN = b.org\n").unwrap_err();
        assert!(matches!(err, Error::DuplicateKey { ref key, .. } if key == "mail_domain"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("max_message_size", "30MB"),
            ("max_user_send_per_minute", "sixty"),
            ("username_min_length", "-1"),
            ("filtermail_smtp_port", "70000"),
            ("max_load_1m", "high"),
            ("min_available_memory", "200K"),
            ("min_free_disk_space", "1.5G"),
            ("max_mailbox_size", "lots"),
            ("delete_mails_after", "20d"),
            ("max_imap_connections", ""),
        ];
        for (key, value) in cases {
            let err =
                parse(&format!("[params]\nmail_domain = x.org\n{key} = {value}\n")).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::InvalidValue { .. }), "{key}: {msg}");
            assert!(msg.contains(&format!("'{key}'")), "{msg}");
            assert!(msg.contains("test.ini"), "{msg}");
        }
    }

    #[test]
    fn python_style_integers() {
        assert_eq!(parse_int::<u64>("1_000"), Ok(1000));
        assert_eq!(parse_int::<u64>("+5"), Ok(5));
        assert_eq!(parse_int::<i64>("-5"), Ok(-5));
        assert_eq!(parse_int::<u64>(" 42 "), Ok(42));
        assert!(parse_int::<u64>("1__0").is_err());
        assert!(parse_int::<u64>("_1").is_err());
        assert!(parse_int::<u64>("1.0").is_err());
        assert!(parse_int::<u64>("").is_err());
        assert!(parse_int::<u64>("-1").is_err());
    }

    #[test]
    fn size_to_mb() {
        assert_eq!(parse_size_mb("500M"), Some(500));
        assert_eq!(parse_size_mb("2G"), Some(2048));
        assert_eq!(parse_size_mb(" 1g "), Some(1024));
        assert_eq!(parse_size_mb("100MB"), Some(100));
        assert_eq!(parse_size_mb("2gb"), Some(2048));
        assert_eq!(parse_size_mb("256"), Some(256));
        assert_eq!(parse_size_mb("256B"), Some(256));
        assert_eq!(parse_size_mb("1.5G"), None);
        assert_eq!(parse_size_mb("1T"), None);
        assert_eq!(parse_size_mb(""), None);
    }

    #[test]
    fn get_user_rejects_path_escapes() {
        let c = minimal("something.testrun.org", "mailboxes_dir = /tmp/mb");
        let u = c.get_user("user1@something.testrun.org").unwrap();
        assert_eq!(
            u.maildir,
            PathBuf::from("/tmp/mb/user1@something.testrun.org")
        );
        assert_eq!(u.password_path, u.maildir.join("password"));
        for bad in [
            "",
            "..",
            ".",
            "../some@something.testrun.org",
            "nodomain",
            "a/b@x",
        ] {
            assert!(
                matches!(c.get_user(bad), Err(Error::InvalidAddress(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn load_reads_file_and_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatmail.ini");
        std::fs::write(&path, "[params]\nmail_domain = chat.example.org\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.inipath, path);
        let err = Config::load(dir.path().join("missing.ini")).unwrap_err();
        assert!(err.to_string().contains("missing.ini"));
    }
}
