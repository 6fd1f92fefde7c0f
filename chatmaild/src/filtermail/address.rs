//! Mail addresses as they appear in SMTP paths and the `From:` header.
//!
//! Addresses are compared case-insensitively everywhere in filtermail (the relay creates
//! lower-case accounts only), so every parsed address is lower-cased once here.

/// Parse the argument of `MAIL FROM:` / `RCPT TO:` (everything after the colon).
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
}
