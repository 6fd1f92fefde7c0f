//! Mail addresses as they appear in SMTP paths and the `From:` header.
//!
//! Addresses are compared case-insensitively everywhere in filtermail (the relay creates
//! lower-case accounts only), so every parsed address is lower-cased once here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Parse the argument of `MAIL FROM:` / `RCPT TO:` (everything after the colon).
///
/// The result is lower-cased but otherwise as written; [`canonical_mailbox`] gives the
/// mailbox it names.
///
/// Returns `Ok(None)` for the null path `<>`, `Ok(Some(addr))` for a valid address, and
/// `Err(())` for anything unparsable. SMTP parameters after the path (`SIZE=`, `BODY=`,
/// `ORCPT=`, ...) are ignored.
#[allow(clippy::result_unit_err)]
pub fn parse_path(arg: &str) -> Result<Option<String>, ()> {
    let arg = arg.trim_start();
    let raw = if let Some(rest) = arg.strip_prefix('<') {
        let end = rest.find('>').ok_or(())?;
        &rest[..end]
    } else {
        // Some clients send bare addresses; the path ends at the first blank.
        arg.split([' ', '\t']).next().unwrap_or("")
    };
    if raw.is_empty() {
        return Ok(None);
    }
    // An obsolete source route (`@relay1,@relay2:user@domain`) only names the final
    // mailbox after the colon.
    let raw = match raw.strip_prefix('@') {
        Some(_) => raw.rsplit_once(':').map(|(_, a)| a).ok_or(())?,
        None => raw,
    };
    let addr = raw.to_lowercase();
    if is_valid_address(&addr) {
        Ok(Some(addr))
    } else {
        Err(())
    }
}

/// Syntax check for `local@domain`, permissive enough for SRS, `+` tags, quoted local
/// parts, IP literals and UTF-8, strict about anything that could break a protocol line or
/// a file path.
pub fn is_valid_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    is_valid_local_part(local) && is_valid_domain(domain)
}

fn is_valid_local_part(local: &str) -> bool {
    if local.is_empty() || local.len() > 64 {
        return false;
    }
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return is_valid_quoted_content(inner);
    }
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn is_valid_quoted_content(inner: &str) -> bool {
    let mut escaped = false;
    for c in inner.chars() {
        if c.is_control() {
            return false;
        }
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return false;
        }
    }
    !escaped
}

fn is_valid_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > 255 {
        return false;
    }
    if let Some(literal) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return !literal.is_empty()
            && literal
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'));
    }
    // One trailing dot (an absolute name) is allowed: Postfix strips it, see
    // [`canonical_mailbox`].
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// RFC 5322 `atext`, plus any non-ASCII character (RFC 6532).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// The domain part of an address (after the last `@`).
pub fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// `[a.b.c.d]`-style domains belong to IP-only relays, which do not DKIM-sign.
pub fn is_ip_literal_domain(domain: &str) -> bool {
    domain.starts_with('[') && domain.ends_with(']')
}

/// The address in a domain literal (`[203.0.113.7]`, `[IPv6:2001:db8::1]`), or `None`
/// for any other domain, including syntactically bogus literals (`[999.1.1.1]`, `[foo]`,
/// `[1.2.3]`): only a real address can be compared with the delivering peer.
pub fn ip_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match strip_prefix_ignore_case(inner, "ipv6:") {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        // Rust's parser is strict: four decimal octets, no leading zeros, nothing else.
        None => inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// An address as a peer reports it (Postfix's XFORWARD `ADDR=`, nginx's `$remote_addr`):
/// plain IPv4, plain IPv6 or `IPv6:`-tagged IPv6. IPv4-mapped IPv6 addresses count as
/// the IPv4 address, so that a dual-stack listener compares equal with `[a.b.c.d]`.
pub fn parse_peer_addr(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    let bare = strip_prefix_ignore_case(value, "ipv6:").unwrap_or(value);
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The mailbox Postfix and Dovecot deliver a recipient to, for an address as
/// [`parse_path`] returns it (already lower-case, source route removed): the quotes of a
/// quoted local part go (`"bob"@x` is `bob@x` to Postfix), the `+` extension goes
/// (`recipient_delimiter = +` in Postfix, Dovecot's default), and one trailing dot of the
/// domain goes (Postfix's trivial-rewrite strips it). Rules must only ever look at this
/// form, since every spelling of one mailbox ends up in the same INBOX.
pub fn canonical_mailbox(addr: &str) -> String {
    let (local, domain) = addr.rsplit_once('@').unwrap_or((addr, ""));
    let local = unquote(local);
    let local = local
        .split_once('+')
        .map_or(local.as_str(), |(base, _)| base);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    format!("{local}@{domain}")
}

/// Whether the local part routes elsewhere when Postfix resolves it: the percent hack
/// (`bob%other@x`), a UUCP bang path (`other!bob@x`) or a second `@` inside quotes. Such
/// forms must be refused for the relay's own domain instead of being interpreted.
pub fn has_routing_syntax(addr: &str) -> bool {
    let local = addr.rsplit_once('@').map_or(addr, |(local, _)| local);
    unquote(local).contains(['%', '!', '@'])
}

/// A quoted local part without its quotes and backslash escapes; others as they are.
fn unquote(local: &str) -> String {
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return local.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_paths() {
        let ok =
            |arg: &str, want: &str| assert_eq!(parse_path(arg), Ok(Some(want.to_owned())), "{arg}");
        ok("<t1@example.org>", "t1@example.org");
        ok("<t2@example.org> SIZE=1000 BODY=8BITMIME", "t2@example.org");
        ok(
            "<SRS0=HHH=TT=example.org=alice@example.net> ORCPT=rfc822;x@y",
            "srs0=hhh=tt=example.org=alice@example.net",
        );
        ok("<abc+alice@Example.NET>", "abc+alice@example.net");
        ok(" <t3@example.org>", "t3@example.org");
        ok("t6@example.org", "t6@example.org");
        ok("t7@example.org SIZE=5", "t7@example.org");
        ok("<@relay.example:t8@example.org>", "t8@example.org");
        ok("<user@[203.0.113.7]>", "user@[203.0.113.7]");
        ok("<\"john doe\"@example.org>", "\"john doe\"@example.org");
        ok("<jörg@bücher.example>", "jörg@bücher.example");
    }

    #[test]
    fn null_path() {
        assert_eq!(parse_path("<>"), Ok(None));
        assert_eq!(parse_path("<> SIZE=10"), Ok(None));
        assert_eq!(parse_path(""), Ok(None));
    }

    #[test]
    fn bad_paths() {
        for arg in [
            "<unterminated@example.org",
            "<no-at-sign>",
            "<a@>",
            "<@example.org>",
            "<a b@example.org>",
            "<a@exa mple.org>",
            "<a..b@example.org>",
            "<.a@example.org>",
            "<a@example..org>",
            "<a@-example.org>",
            "<a@example.org\r\nRCPT TO:<b@c.d>>",
            "<a\u{0}@example.org>",
            "<a@[]>",
            "<a@[1.2.3.4/5]>",
            "<\"unbalanced@example.org>",
            "<a@ex/ample.org>",
        ] {
            assert_eq!(parse_path(arg), Err(()), "{arg:?}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(domain_of("a@b.example"), "b.example");
        assert_eq!(domain_of("\"x@y\"@z.example"), "z.example");
        assert!(is_ip_literal_domain(domain_of("a@[1.2.3.4]")));
        assert!(!is_ip_literal_domain(domain_of("a@1.2.3.4")));
    }

    #[test]
    fn every_spelling_names_one_mailbox() {
        let canon = |arg: &str| canonical_mailbox(&parse_path(arg).unwrap().unwrap());
        for arg in [
            "<bob@x.example>",
            "<BOB@X.Example>",
            "<bob+tag@x.example>",
            "<bob+a+b@x.example>",
            "<\"bob\"@x.example>",
            "<\"Bob+tag\"@x.example>",
            "<\"b\\ob\"@x.example>",
            "<bob@x.example.>",
            "<@relay.example:bob+x@X.EXAMPLE.>",
        ] {
            assert_eq!(canon(arg), "bob@x.example", "{arg}");
        }
        assert_eq!(canon("<bob@[203.0.113.7]>"), "bob@[203.0.113.7]");
        // Nothing before the delimiter: no account can have an empty name.
        assert_eq!(canon("<+bob@x.example>"), "@x.example");
        // Only one trailing dot is an absolute name; two are a syntax error.
        assert_eq!(parse_path("<bob@x.example..>"), Err(()));
        assert_eq!(parse_path("<bob@.>"), Err(()));
    }

    #[test]
    fn routing_forms() {
        for addr in [
            "bob%other.example@x.example",
            "other.example!bob@x.example",
            "\"bob%other\"@x.example",
            "\"bob@other.example\"@x.example",
        ] {
            assert!(has_routing_syntax(addr), "{addr}");
        }
        for addr in ["bob@x.example", "bob+t@x.example", "\"b.ob\"@x.example"] {
            assert!(!has_routing_syntax(addr), "{addr}");
        }
    }

    #[test]
    fn ip_literals() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip_literal("[203.0.113.7]"), Some(v4("203.0.113.7")));
        assert_eq!(ip_literal("[ipv6:2001:db8::1]"), Some(v4("2001:db8::1")));
        assert_eq!(ip_literal("[IPv6:2001:db8::1]"), Some(v4("2001:db8::1")));
        for bogus in [
            "[999.1.1.1]",
            "[1.2.3]",
            "[01.2.3.4]",
            "[foo]",
            "[2001:db8::1]",
            "[ipv6:1.2.3.4]",
            "[]",
            "203.0.113.7",
            "x.example",
        ] {
            assert_eq!(ip_literal(bogus), None, "{bogus}");
        }
    }

    #[test]
    fn peer_addresses() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(parse_peer_addr("203.0.113.7"), ip("203.0.113.7"));
        assert_eq!(parse_peer_addr("IPV6:2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_peer_addr("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_peer_addr("::ffff:203.0.113.7"), ip("203.0.113.7"));
        for bad in [
            "[UNAVAILABLE]",
            "[TEMPUNAVAIL]",
            "",
            "host.example",
            "1.2.3.4:25",
        ] {
            assert_eq!(parse_peer_addr(bad), None, "{bad}");
        }
    }
}
