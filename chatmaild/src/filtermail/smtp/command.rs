//! Parsing of SMTP/LMTP command lines.

use std::net::IpAddr;

use crate::filtermail::address::{parse_path, parse_peer_addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo,
    Ehlo,
    /// LMTP's greeting (RFC 2033): replies after DATA come one per recipient.
    Lhlo,
    /// `Ok(None)` is the null sender.
    Mail(Result<Option<String>, ()>),
    Rcpt(Result<String, ()>),
    /// Postfix's XFORWARD (`XFORWARD ADDR=203.0.113.7 NAME=...`): `Ok(None)` when the
    /// command has no `ADDR`, `Ok(Some(None))` when the address is `[UNAVAILABLE]` or
    /// not an address, `Err` for a malformed attribute list.
    Xforward(Result<Option<Option<IpAddr>>, ()>),
    Data,
    Rset,
    Noop,
    Quit,
    Unknown,
}

/// Parse one command line (with or without the trailing CRLF).
pub fn parse(line: &[u8]) -> Command {
    let Ok(line) = std::str::from_utf8(line) else {
        return Command::Unknown;
    };
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "HELO" => Command::Helo,
        "EHLO" => Command::Ehlo,
        "LHLO" => Command::Lhlo,
        "MAIL" => match strip_keyword(rest, "FROM:") {
            Some(arg) => Command::Mail(parse_path(arg)),
            None => Command::Mail(Err(())),
        },
        "RCPT" => match strip_keyword(rest, "TO:") {
            Some(arg) => Command::Rcpt(match parse_path(arg) {
                Ok(Some(addr)) => Ok(addr),
                _ => Err(()),
            }),
            None => Command::Rcpt(Err(())),
        },
        "XFORWARD" => Command::Xforward(parse_xforward(rest)),
        "DATA" => Command::Data,
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        _ => Command::Unknown,
    }
}

/// `name=value` pairs, values in xtext (RFC 3461: `+XX` is a hex-encoded octet). Other
/// attributes than `ADDR` are accepted and ignored.
fn parse_xforward(rest: &str) -> Result<Option<Option<IpAddr>>, ()> {
    let mut addr = None;
    let mut any = false;
    for attr in rest.split_ascii_whitespace() {
        let (name, value) = attr.split_once('=').ok_or(())?;
        if name.is_empty() {
            return Err(());
        }
        any = true;
        if name.eq_ignore_ascii_case("ADDR") {
            addr = Some(decode_xtext(value).as_deref().and_then(parse_peer_addr));
        }
    }
    if any { Ok(addr) } else { Err(()) }
}

fn decode_xtext(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'+' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn strip_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let s = s.trim_start();
    let head = s.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &s[keyword.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(parse(b"HELO x\r\n"), Command::Helo);
        assert_eq!(parse(b"ehlo localhost\r\n"), Command::Ehlo);
        assert_eq!(parse(b"LHLO localhost\r\n"), Command::Lhlo);
        assert_eq!(parse(b"DATA\r\n"), Command::Data);
        assert_eq!(parse(b"data\r\n"), Command::Data);
        assert_eq!(parse(b"RSET\r\n"), Command::Rset);
        assert_eq!(parse(b"NOOP whatever\r\n"), Command::Noop);
        assert_eq!(parse(b"QUIT\r\n"), Command::Quit);
        assert_eq!(parse(b"VRFY a@b\r\n"), Command::Unknown);
        assert_eq!(parse(b"STARTTLS\r\n"), Command::Unknown);
        assert_eq!(parse(b"\r\n"), Command::Unknown);
        assert_eq!(parse(b"\xff\xfe\r\n"), Command::Unknown);
        assert_eq!(parse(b"DATAX\r\n"), Command::Unknown);
    }

    #[test]
    fn mail_from() {
        assert_eq!(
            parse(b"MAIL FROM:<A@Example.org> SIZE=100 BODY=8BITMIME\r\n"),
            Command::Mail(Ok(Some("a@example.org".into())))
        );
        assert_eq!(
            parse(b"mail from: <a@example.org>\r\n"),
            Command::Mail(Ok(Some("a@example.org".into())))
        );
        assert_eq!(parse(b"MAIL FROM:<>\r\n"), Command::Mail(Ok(None)));
        assert_eq!(parse(b"MAIL FROM:<bad>\r\n"), Command::Mail(Err(())));
        assert_eq!(parse(b"MAIL TO:<a@b.c>\r\n"), Command::Mail(Err(())));
        assert_eq!(parse(b"MAIL\r\n"), Command::Mail(Err(())));
    }

    #[test]
    fn xforward() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            parse(b"XFORWARD NAME=spike.example ADDR=203.0.113.7 PROTO=ESMTP\r\n"),
            Command::Xforward(Ok(Some(ip("203.0.113.7"))))
        );
        assert_eq!(
            parse(b"xforward addr=IPV6:2001:db8::1\r\n"),
            Command::Xforward(Ok(Some(ip("2001:db8::1"))))
        );
        assert_eq!(
            parse(b"XFORWARD ADDR=+32+30+33.0.113.7\r\n"),
            Command::Xforward(Ok(Some(ip("203.0.113.7"))))
        );
        for unknown in ["[UNAVAILABLE]", "[TEMPUNAVAIL]", "spike.example", "+zz"] {
            assert_eq!(
                parse(format!("XFORWARD ADDR={unknown}\r\n").as_bytes()),
                Command::Xforward(Ok(Some(None))),
                "{unknown}"
            );
        }
        assert_eq!(
            parse(b"XFORWARD HELO=spike.example\r\n"),
            Command::Xforward(Ok(None))
        );
        for bad in ["XFORWARD\r\n", "XFORWARD ADDR\r\n", "XFORWARD =1.2.3.4\r\n"] {
            assert_eq!(parse(bad.as_bytes()), Command::Xforward(Err(())), "{bad}");
        }
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(
            parse(b"RCPT TO:<B@example.org> NOTIFY=NEVER ORCPT=rfc822;b@example.org\r\n"),
            Command::Rcpt(Ok("b@example.org".into()))
        );
        assert_eq!(parse(b"RCPT TO:<>\r\n"), Command::Rcpt(Err(())));
        assert_eq!(parse(b"RCPT TO:<a@b.c\r\n"), Command::Rcpt(Err(())));
        assert_eq!(parse(b"RCPT FROM:<a@b.c>\r\n"), Command::Rcpt(Err(())));
    }
}
