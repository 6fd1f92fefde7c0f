//! Parsing of Dovecot dict-proxy request lines (client → service) and reply encoding.
//!
//! One request per line; the first byte is the command, the rest are tab-separated fields.
//! Dovecot escapes tab, CR, LF and `\x01` inside fields with a `\x01` prefix
//! (`\x01t`, `\x01r`, `\x01n`, `\x011`); fields are unescaped here, and reply values are
//! escaped the same way, so that values containing those bytes survive the round trip.

/// One decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `H<major>\t<minor>\t<value_type>\t<user>\t<dict_name>`: accepted without checks.
    Hello,
    /// `L<key>[\t<user>]`
    Lookup { key: String, user: Option<String> },
    /// `I<flags>\t<max_rows>\t<path>[\t<user>]`
    Iterate {
        flags: String,
        max_rows: String,
        path: String,
        user: Option<String>,
    },
    /// `B<txid>\t<user>`
    Begin { txid: String, user: String },
    /// `S<txid>\t<key>[\t<value>]`
    Set {
        txid: String,
        key: String,
        value: Option<String>,
    },
    /// `C<txid>`
    Commit { txid: String },
    /// Anything else (unset, atomic increment, rollback, ...): logged and ignored.
    Unknown { command: char },
}

impl Request {
    /// Decode one line (without its newline; surrounding whitespace already trimmed).
    /// `line` must not be empty.
    pub fn parse(line: &str) -> Request {
        let mut chars = line.chars();
        let command = chars.next().unwrap_or('\0');
        let rest = chars.as_str();
        let mut fields = rest.split('\t').map(tab_unescape);
        let mut next = || fields.next();
        match command {
            'H' => Request::Hello,
            'L' => Request::Lookup {
                key: next().unwrap_or_default(),
                user: next(),
            },
            'I' => Request::Iterate {
                flags: next().unwrap_or_default(),
                max_rows: next().unwrap_or_default(),
                path: next().unwrap_or_default(),
                user: next(),
            },
            'B' => Request::Begin {
                txid: next().unwrap_or_default(),
                user: next().unwrap_or_default(),
            },
            'S' => Request::Set {
                txid: next().unwrap_or_default(),
                key: next().unwrap_or_default(),
                value: next(),
            },
            'C' => Request::Commit {
                txid: next().unwrap_or_default(),
            },
            other => Request::Unknown { command: other },
        }
    }
}

/// Undo Dovecot's `str_tabescape`.
pub fn tab_unescape(field: &str) -> String {
    if !field.contains('\x01') {
        return field.to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\x01'),
        }
    }
    out
}

/// Dovecot's `str_tabescape`, for values sent back in replies.
pub fn tab_escape(value: &str) -> String {
    if !value.contains(['\x01', '\t', '\r', '\n']) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello() {
        assert_eq!(Request::parse("H3\t2\t0\t\tauth"), Request::Hello);
        assert_eq!(Request::parse("H"), Request::Hello);
        assert_eq!(Request::parse("HELLO"), Request::Hello);
    }

    #[test]
    fn lookup_with_and_without_user() {
        assert_eq!(
            Request::parse("Lshared/userdb/a@x.org\ta@x.org"),
            Request::Lookup {
                key: "shared/userdb/a@x.org".into(),
                user: Some("a@x.org".into())
            }
        );
        assert_eq!(
            Request::parse("Lshared/userdb/a@x.org"),
            Request::Lookup {
                key: "shared/userdb/a@x.org".into(),
                user: None
            }
        );
        assert_eq!(
            Request::parse("L"),
            Request::Lookup {
                key: String::new(),
                user: None
            }
        );
    }

    #[test]
    fn iterate_fields() {
        assert_eq!(
            Request::parse("I0\t0\tshared/userdb/\tu@x"),
            Request::Iterate {
                flags: "0".into(),
                max_rows: "0".into(),
                path: "shared/userdb/".into(),
                user: Some("u@x".into()),
            }
        );
        assert_eq!(
            Request::parse("I0"),
            Request::Iterate {
                flags: "0".into(),
                max_rows: String::new(),
                path: String::new(),
                user: None,
            }
        );
    }

    #[test]
    fn transaction_lines() {
        assert_eq!(
            Request::parse("B1\tu@x.org"),
            Request::Begin {
                txid: "1".into(),
                user: "u@x.org".into()
            }
        );
        assert_eq!(
            Request::parse("B7"),
            Request::Begin {
                txid: "7".into(),
                user: String::new()
            }
        );
        assert_eq!(
            Request::parse("S1\tpriv/g/messagenew"),
            Request::Set {
                txid: "1".into(),
                key: "priv/g/messagenew".into(),
                value: None
            }
        );
        assert_eq!(
            Request::parse("S1\tshared/last-login/u@x\t1767312345"),
            Request::Set {
                txid: "1".into(),
                key: "shared/last-login/u@x".into(),
                value: Some("1767312345".into())
            }
        );
        assert_eq!(
            Request::parse("S1\tk\t"),
            Request::Set {
                txid: "1".into(),
                key: "k".into(),
                value: Some(String::new())
            }
        );
        assert_eq!(Request::parse("C1"), Request::Commit { txid: "1".into() });
    }

    #[test]
    fn unknown_commands() {
        for (line, c) in [
            ("U1\tkey", 'U'),
            ("A1\tk\t1", 'A'),
            ("R1", 'R'),
            ("é", 'é'),
            ("?", '?'),
        ] {
            assert_eq!(Request::parse(line), Request::Unknown { command: c });
        }
    }

    #[test]
    fn fields_are_tab_unescaped() {
        assert_eq!(
            Request::parse("S1\tk\x01t1\tline1\x01nline2\x01r\x011x\x01"),
            Request::Set {
                txid: "1".into(),
                key: "k\t1".into(),
                value: Some("line1\nline2\r\x01x\x01".into())
            }
        );
        assert_eq!(tab_unescape("a\x01zb"), "azb");
    }

    #[test]
    fn escape_round_trip() {
        let s = "a\tb\nc\rd\x01e\"f\\g";
        let esc = tab_escape(s);
        assert!(!esc.contains(['\t', '\n', '\r']));
        assert_eq!(tab_unescape(&esc), s);
        assert_eq!(tab_escape("plain"), "plain");
    }
}
