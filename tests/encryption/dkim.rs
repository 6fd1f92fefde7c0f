//! A DKIM signer for a test sender domain, its key published in the test DNS (the relay's
//! unbound resolves through it).

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

pub struct Signer {
    pub domain: String,
    pub selector: String,
    pkcs8: Vec<u8>,
}

impl Signer {
    /// A new key under a selector unique to this run: the relay's resolver caches
    /// records, so a rerun must not find an older run's key under the same name.
    pub fn publish(domain: &str) -> Signer {
        let selector = format!("s{}", std::process::id());
        let s = Signer {
            domain: domain.to_string(),
            selector,
            pkcs8: Ed25519Key::generate_pkcs8().unwrap(),
        };
        use base64::Engine;
        let p = base64::engine::general_purpose::STANDARD.encode(s.key().public_key());
        let record = format!(
            "{}._domainkey.{}. 60 IN TXT \"v=DKIM1; k=ed25519; p={p}\"",
            s.selector, s.domain
        );
        crate::common::dns_set(&[&record]);
        s
    }

    fn key(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap()
    }

    /// The message with a DKIM-Signature over `headers` prepended; `body_length` adds
    /// `l=`.
    pub fn sign(&self, message: &[u8], headers: &[&str], body_length: bool) -> Vec<u8> {
        let sig = DkimSigner::from_key(self.key())
            .domain(self.domain.clone())
            .selector(self.selector.clone())
            .headers(headers.iter().copied())
            .body_length(body_length)
            .sign(message)
            .unwrap();
        let mut out = sig.to_header().into_bytes();
        out.extend_from_slice(message);
        out
    }
}
