//! The encryption oracle: reads a stored message the way Delta Chat core does (mailparse,
//! the structure its `get_autocrypt_mime` demands) and decides whether an enforcing
//! recipient may hold it. Only what the recipient's client sees counts; what filtermail
//! thought of the message when it passed is irrelevant here.

use mailparse::{MailHeaderMap, ParsedMail};

/// Who reads the message.
pub struct Reader<'a> {
    /// The recipient's address (for "Autocrypt Setup Message to oneself").
    pub address: &'a str,
    /// The recipient has the `enforceE2EEincoming` marker.
    pub enforcing: bool,
}

/// Why a stored message is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    PgpMime,
    SecureJoin,
    MailerDaemon,
    AutocryptSetup,
    OptOut,
}

/// `Ok` with the reason the message may be in this mailbox, or `Err` with what the client
/// sees instead (a violation of the relay's promise).
pub fn judge(stored: &[u8], reader: &Reader) -> Result<Allowed, String> {
    if !reader.enforcing {
        return Ok(Allowed::OptOut);
    }
    let mail = mailparse::parse_mail(stored)
        .map_err(|e| format!("stored, but the client cannot parse it: {e}"))?;
    let pgp = pgp_mime(&mail);
    if pgp.is_ok() {
        return Ok(Allowed::PgpMime);
    }
    if is_securejoin(&mail) {
        return Ok(Allowed::SecureJoin);
    }
    if is_mailer_daemon_report(&mail) {
        return Ok(Allowed::MailerDaemon);
    }
    if is_autocrypt_setup_to_self(&mail, reader.address) {
        return Ok(Allowed::AutocryptSetup);
    }
    Err(format!(
        "cleartext in an enforcing mailbox: {} ({})",
        pgp.unwrap_err(),
        shape(&mail)
    ))
}

/// RFC 3156 as Delta Chat core checks it: multipart/encrypted of exactly two parts, the
/// version part and one armored OpenPGP message.
fn pgp_mime(mail: &ParsedMail) -> Result<(), String> {
    if mail.ctype.mimetype != "multipart/encrypted" {
        return Err(format!("top-level type {}", mail.ctype.mimetype));
    }
    let [version, payload] = &mail.subparts[..] else {
        return Err(format!("{} parts, not 2", mail.subparts.len()));
    };
    if version.ctype.mimetype != "application/pgp-encrypted" {
        return Err(format!("first part {}", version.ctype.mimetype));
    }
    let v = version.get_body_raw().unwrap_or_default();
    if v.trim_ascii() != b"Version: 1" {
        return Err(format!("version part {:?}", String::from_utf8_lossy(&v)));
    }
    if payload.ctype.mimetype != "application/octet-stream" {
        return Err(format!("second part {}", payload.ctype.mimetype));
    }
    let armor = payload.get_body_raw().unwrap_or_default();
    let armor = armor.trim_ascii();
    if !armor.starts_with(b"-----BEGIN PGP MESSAGE-----")
        || !armor.ends_with(b"-----END PGP MESSAGE-----")
    {
        return Err("second part is not one armored PGP MESSAGE".into());
    }
    Ok(())
}

/// A Secure-Join vc-/vg-request: the header and one text/plain part saying the same.
fn is_securejoin(mail: &ParsedMail) -> bool {
    let header = mail
        .headers
        .get_first_value("Secure-Join")
        .unwrap_or_default();
    if !matches!(header.trim(), "vc-request" | "vg-request") {
        return false;
    }
    let part = match &mail.subparts[..] {
        [] => mail,
        [one] if mail.ctype.mimetype == "multipart/mixed" => one,
        _ => return false,
    };
    if part.ctype.mimetype != "text/plain" || !part.subparts.is_empty() {
        return false;
    }
    let body = part.get_body().unwrap_or_default().trim().to_lowercase();
    body == "secure-join: vc-request" || body == "secure-join: vg-request"
}

fn is_mailer_daemon_report(mail: &ParsedMail) -> bool {
    let from = mail.headers.get_first_value("From").unwrap_or_default();
    let submitted = mail
        .headers
        .get_first_value("Auto-Submitted")
        .unwrap_or_default();
    mail.ctype.mimetype == "multipart/report"
        && !submitted.trim().is_empty()
        && address_in(&from).starts_with("mailer-daemon@")
}

fn is_autocrypt_setup_to_self(mail: &ParsedMail, me: &str) -> bool {
    let from = mail.headers.get_first_value("From").unwrap_or_default();
    let to = mail.headers.get_first_value("To").unwrap_or_default();
    mail.headers.get_first_value("Subject").as_deref() == Some("Autocrypt Setup Message")
        && mail.ctype.mimetype == "multipart/mixed"
        && address_in(&from) == me.to_lowercase()
        && address_in(&to) == me.to_lowercase()
}

/// `Name <a@b>` -> `a@b`, lower-cased.
fn address_in(header: &str) -> String {
    let inner = match (header.rfind('<'), header.rfind('>')) {
        (Some(l), Some(r)) if l < r => &header[l + 1..r],
        _ => header,
    };
    inner.trim().to_lowercase()
}

/// The MIME tree in one line, e.g. `text/plain` or `multipart/mixed[text/plain]`.
pub fn shape(mail: &ParsedMail) -> String {
    if mail.subparts.is_empty() {
        return mail.ctype.mimetype.clone();
    }
    let inner: Vec<String> = mail.subparts.iter().map(shape).collect();
    format!("{}[{}]", mail.ctype.mimetype, inner.join(","))
}

/// The start of a stored message for a failure report (binary bytes escaped).
pub fn excerpt(stored: &[u8], max: usize) -> String {
    let cut = &stored[..stored.len().min(max)];
    let text = String::from_utf8_lossy(cut).replace('\r', "");
    if stored.len() > max {
        format!("{text}\n[... {} more bytes]", stored.len() - max)
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Reader = Reader {
        address: "me@x.test",
        enforcing: true,
    };

    fn pgp(boundary: &str, before_ct: &str) -> Vec<u8> {
        format!(
            "From: <a@x.test>\r\nTo: <me@x.test>\r\n{before_ct}Content-Type: multipart/encrypted; \
             protocol=\"application/pgp-encrypted\"; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
             --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n\
             -----BEGIN PGP MESSAGE-----\r\n\r\nwV4DAAAA\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n\r\n\
             --{boundary}--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn pgp_mime_passes_and_cleartext_does_not() {
        assert_eq!(judge(&pgp("xyz", ""), &ME), Ok(Allowed::PgpMime));
        let clear = b"From: <a@x.test>\r\nTo: <me@x.test>\r\n\r\nhello\r\n";
        let err = judge(clear, &ME).unwrap_err();
        assert!(err.contains("top-level type text/plain"), "{err}");
        let opt_out = Reader {
            address: "me@x.test",
            enforcing: false,
        };
        assert_eq!(judge(clear, &opt_out), Ok(Allowed::OptOut));
    }

    #[test]
    fn a_body_that_starts_early_is_cleartext() {
        // what Postfix stores when a line it does not take as a header ends the header block
        let mut m = b"From: <a@x.test>\r\nX-Bad Name: v\r\n\r\n".to_vec();
        m.extend_from_slice(&pgp("xyz", "")[b"From: <a@x.test>\r\n".len()..]);
        assert!(judge(&m, &ME).is_err());
    }

    #[test]
    fn the_last_boundary_parameter_is_the_one_the_client_uses() {
        let m = String::from_utf8(pgp("REAL", ""))
            .unwrap()
            .replace("boundary=\"REAL\"", "boundary=\"REAL\"; boundary=\"OTHER\"");
        let m = m.replace(
            "\r\n\r\n--REAL\r\n",
            "\r\n\r\n--OTHER\r\nContent-Type: text/plain\r\n\r\nhi\r\n--OTHER--\r\n--REAL\r\n",
        );
        assert!(judge(m.as_bytes(), &ME).is_err());
    }

    #[test]
    fn exceptions() {
        let sj = b"From: <a@x.test>\r\nSecure-Join: vc-request\r\nContent-Type: text/plain\r\n\r\nSecure-Join: vc-request\r\n";
        assert_eq!(judge(sj, &ME), Ok(Allowed::SecureJoin));
        let sj_extra = b"From: <a@x.test>\r\nSecure-Join: vc-request\r\n\r\nSecure-Join: vc-request\r\nbuy now\r\n";
        assert!(judge(sj_extra, &ME).is_err());
        let report = b"From: MAILER-DAEMON@x.test (Mail Delivery System)\r\nAuto-Submitted: auto-replied\r\n\
            Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nbounced\r\n--b--\r\n";
        assert_eq!(judge(report, &ME), Ok(Allowed::MailerDaemon));
        let setup = b"From: <me@x.test>\r\nTo: <me@x.test>\r\nSubject: Autocrypt Setup Message\r\n\
            Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(judge(setup, &ME), Ok(Allowed::AutocryptSetup));
        let other = Reader {
            address: "other@x.test",
            enforcing: true,
        };
        assert!(judge(setup, &other).is_err());
    }

    #[test]
    fn short_boundaries_parse() {
        for b in ["B", "E", "BEG"] {
            assert_eq!(
                judge(&pgp(b, ""), &ME),
                Ok(Allowed::PgpMime),
                "boundary {b}"
            );
        }
    }
}
