//! OpenPGP for probe accounts (rPGP): a key per fresh account, and Autocrypt-style
//! PGP/MIME messages of the exact shape the relay's filtermail lets through (RFC 3156:
//! `multipart/encrypted` with a `Version: 1` part and one armored message made of
//! PKESKs and a final SEIPD, no armor headers).

use std::io::Cursor;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgp::composed::{
    ArmorOptions, EncryptionCaps, KeyType, Message, MessageBuilder, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password};
use rand::Rng;
use rand::thread_rng;

/// A secret key for one address.
#[derive(Debug, Clone)]
pub struct Key {
    pub address: String,
    secret: SignedSecretKey,
    public: SignedPublicKey,
}

impl Key {
    /// A new key like chat clients make: Ed25519 primary key for certification and an
    /// X25519 (ECDH) subkey for encryption, user ID `<address>`. Takes milliseconds.
    pub fn generate(address: &str) -> anyhow::Result<Key> {
        let mut encryption = SubkeyParamsBuilder::default();
        encryption
            .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_sign(false)
            .can_encrypt(EncryptionCaps::All)
            .can_authenticate(false);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id(format!("<{address}>"))
            .subkeys(vec![encryption.build()?]);
        let secret = params
            .build()?
            .generate(thread_rng())
            .context("generating an OpenPGP key")?;
        let public = SignedPublicKey::from(secret.clone());
        Ok(Key {
            address: address.to_owned(),
            secret,
            public,
        })
    }

    pub fn public(&self) -> &SignedPublicKey {
        &self.public
    }

    /// The public key (binary, base64) as the `keydata` of an Autocrypt header.
    pub fn autocrypt_keydata(&self) -> anyhow::Result<String> {
        let bytes = self
            .public
            .to_bytes()
            .context("serializing the public key")?;
        Ok(STANDARD.encode(bytes))
    }
}

/// Encrypt `plaintext` to the encryption subkey of every recipient; ASCII armor with LF
/// line ends and without armor headers (filtermail refuses those in outgoing mail).
pub fn encrypt(plaintext: &[u8], recipients: &[&SignedPublicKey]) -> anyhow::Result<String> {
    let mut rng = thread_rng();
    let mut builder = MessageBuilder::from_bytes("", plaintext.to_vec())
        .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES128);
    for cert in recipients {
        let subkey = cert
            .public_subkeys
            .iter()
            .find(|k| k.algorithm().can_encrypt())
            .ok_or_else(|| anyhow!("the recipient key has no encryption subkey"))?;
        builder.encrypt_to_key(&mut rng, subkey)?;
    }
    let options = ArmorOptions {
        headers: None,
        include_checksum: true,
    };
    Ok(builder.to_armored_string(&mut rng, options)?)
}

/// Decrypt an armored OpenPGP message with `key`.
pub fn decrypt(armored: &[u8], key: &Key) -> anyhow::Result<Vec<u8>> {
    let (message, _) = Message::from_armor(Cursor::new(armored.to_vec()))
        .context("parsing the OpenPGP message")?;
    let mut message = message
        .decrypt(&Password::empty(), &key.secret)
        .context("decrypting")?;
    if message.is_compressed() {
        message = message.decompress()?;
    }
    Ok(message.as_data_vec()?)
}

/// A complete PGP/MIME message from `from` to `to`, encrypted to the recipients and to
/// the sender (as chat clients do), with the sender's Autocrypt header. The cleartext is
/// a `text/plain` part carrying the real subject as a protected header; the outer
/// subject is `[...]`. Lines end in CRLF; the caller dot-stuffs when sending.
pub fn encrypted_message(
    from: &Key,
    to: &[(&str, &SignedPublicKey)],
    subject: &str,
    text: &str,
) -> anyhow::Result<Vec<u8>> {
    if subject.contains(['\r', '\n']) {
        bail!("a subject cannot contain line breaks");
    }
    let inner = format!(
        "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n\
         Subject: {subject}\r\n\r\n{}\r\n",
        crlf(text)
    );
    let mut keys: Vec<&SignedPublicKey> = to.iter().map(|(_, k)| *k).collect();
    keys.push(from.public());
    let armored = crlf(&encrypt(inner.as_bytes(), &keys)?);
    let boundary = token(24);
    let domain = from.address.rsplit('@').next().unwrap_or("localhost");
    let recipients = to
        .iter()
        .map(|(a, _)| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(", ");
    let autocrypt = fold(&format!(
        "Autocrypt: addr={}; prefer-encrypt=mutual; keydata={}",
        from.address,
        from.autocrypt_keydata()?
    ));
    let message = format!(
        "From: <{from_addr}>\r\n\
         To: {recipients}\r\n\
         Subject: [...]\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{domain}>\r\n\
         Chat-Version: 1.0\r\n\
         {autocrypt}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/pgp-encrypted\r\n\
         Content-Description: PGP/MIME version identification\r\n\
         \r\n\
         Version: 1\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\
         \r\n\
         {armored}\r\n\
         --{boundary}--\r\n",
        from_addr = from.address,
        date = rfc5322_date(std::time::SystemTime::now()),
        id = token(20),
        armored = armored.trim_end(),
    );
    Ok(message.into_bytes())
}

/// Decrypt the armored block of a received PGP/MIME message; returns the cleartext
/// (the inner MIME part).
pub fn decrypt_message(raw: &[u8], key: &Key) -> anyhow::Result<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
    const END: &[u8] = b"-----END PGP MESSAGE-----";
    let start = find(raw, BEGIN).ok_or_else(|| anyhow!("no OpenPGP message in the mail"))?;
    let end = find(&raw[start..], END)
        .map(|e| start + e + END.len())
        .ok_or_else(|| anyhow!("the OpenPGP message is not terminated"))?;
    decrypt(&raw[start..end], key)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// LF (or mixed) line ends to CRLF, as SMTP needs them.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// A random alphanumeric token (MIME boundary, Message-ID).
fn token(len: usize) -> String {
    thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Fold a long header at 76 columns: keydata is one base64 word, so it is cut anywhere
/// (base64 ignores the folding whitespace).
fn fold(header: &str) -> String {
    let mut out = String::new();
    let mut rest = header;
    let mut width = 76;
    while rest.len() > width {
        let (line, tail) = rest.split_at(width);
        out.push_str(line);
        out.push_str("\r\n ");
        rest = tail;
        width = 75;
    }
    out.push_str(rest);
    out
}

/// `Wed, 25 Nov 2026 20:46:44 +0000`.
fn rfc5322_date(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // civil-from-days (proleptic Gregorian), days since 1970-01-01
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmaild::filtermail::smtp::Envelope;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn encrypt_decrypt_round_trip() {
        let alice = Key::generate("alice@_r.test").unwrap();
        let bob = Key::generate("bob@_r.test").unwrap();
        let armored = encrypt(b"hello bob", &[bob.public(), alice.public()]).unwrap();
        assert!(
            armored.starts_with("-----BEGIN PGP MESSAGE-----\n\n"),
            "{armored}"
        );
        assert_eq!(decrypt(armored.as_bytes(), &bob).unwrap(), b"hello bob");
        assert_eq!(decrypt(armored.as_bytes(), &alice).unwrap(), b"hello bob");
        let eve = Key::generate("eve@_r.test").unwrap();
        assert!(decrypt(armored.as_bytes(), &eve).is_err());
    }

    #[test]
    fn messages_pass_filtermail_and_decrypt() {
        let alice = Key::generate("alice@_r.test").unwrap();
        let bob = Key::generate("bob@_r.test").unwrap();
        let raw = encrypted_message(
            &alice,
            &[("bob@_r.test", bob.public())],
            "hi",
            "line one\n.line two",
        )
        .unwrap();
        let envelope = Envelope {
            mail_from: Some("alice@_r.test".into()),
            rcpt_to: vec!["bob@_r.test".into()],
            data: Vec::new(),
        };
        // the relay's own outgoing rules, called directly: the two must agree
        chatmaild::filtermail::outgoing::check(&envelope, &raw).unwrap();
        let mail = chatmaild::filtermail::mime::Mail::parse(&raw);
        assert_eq!(
            mail.check_encrypted(chatmaild::filtermail::Direction::Outgoing),
            Ok(())
        );
        let inner = String::from_utf8(decrypt_message(&raw, &bob).unwrap()).unwrap();
        assert!(inner.contains("Subject: hi\r\n"), "{inner}");
        assert!(inner.ends_with("\r\nline one\r\n.line two\r\n"), "{inner}");
        // every line of the message ends in CRLF
        assert!(!raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    #[test]
    fn cleartext_is_what_filtermail_refuses() {
        let raw = b"From: <alice@_r.test>\r\nTo: <bob@_r.test>\r\nSubject: x\r\n\r\nhello\r\n";
        let envelope = Envelope {
            mail_from: Some("alice@_r.test".into()),
            rcpt_to: vec!["bob@_r.test".into()],
            data: Vec::new(),
        };
        let refusal = chatmaild::filtermail::outgoing::check(&envelope, raw).unwrap_err();
        assert_eq!(refusal.code, 523);
    }

    #[test]
    fn dates_and_folding() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_639_604);
        assert_eq!(rfc5322_date(t), "Wed, 25 Nov 2026 20:46:44 +0000");
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let long = format!("Autocrypt: keydata={}", "A".repeat(200));
        let folded = fold(&long);
        assert!(folded.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(folded.replace("\r\n ", ""), long);
    }
}
