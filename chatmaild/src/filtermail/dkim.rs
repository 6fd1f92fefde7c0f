//! DKIM verification of incoming mail, aligned strictly with the `From:` domain.
//!
//! OpenDKIM on the relay only signs; incoming mail is verified here so that a message can
//! only claim to be from a domain whose key signed it. Cryptography, canonicalization and
//! key-record parsing are mail-auth's.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_auth::common::crypto::HashAlgorithm;
use mail_auth::common::headers::{Writable, Writer};
use mail_auth::common::resolver::ToFqdn;
use mail_auth::dkim::{Canonicalization, Signature};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use super::reply::Reply;

/// Key records kept in memory (upstream: an LRU of 1000 entries).
const CACHE_CAPACITY: usize = 1000;
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct DkimVerifier {
    authenticator: MessageAuthenticator,
    cache: TxtCache,
}

impl DkimVerifier {
    /// Resolve through the system resolver (unbound on a relay).
    pub fn from_system_conf() -> Result<DkimVerifier, String> {
        let authenticator = MessageAuthenticator::new_system_conf()
            .map_err(|e| format!("cannot set up DNS resolver: {e}"))?;
        Ok(DkimVerifier::new(authenticator))
    }

    /// Resolve through one name server over UDP (tests point this at loopback so that no
    /// query can leave the machine).
    pub fn with_name_server(
        server: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<DkimVerifier, String> {
        use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
        let mut name_server = NameServerConfig::udp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        let authenticator = MessageAuthenticator::new(config, opts)
            .map_err(|e| format!("cannot set up DNS resolver: {e}"))?;
        Ok(DkimVerifier::new(authenticator))
    }

    pub fn new(authenticator: MessageAuthenticator) -> DkimVerifier {
        DkimVerifier {
            authenticator,
            cache: TxtCache::new(CACHE_CAPACITY),
        }
    }

    /// Pre-load a key record (tests, or keys known out of band).
    pub fn add_key_record(&self, name: &str, record: Txt) {
        let far = Instant::now() + Duration::from_secs(365 * 86_400);
        self.cache
            .insert(name.to_fqdn().into_owned().into_boxed_str(), record, far);
    }

    /// Require a valid signature whose `d=` equals `from_domain` (case-insensitive), whose
    /// `h=` covers `From` and which, with `l=`, covers the whole body.
    /// `message` is the unstuffed message.
    pub async fn verify(&self, message: &[u8], from_domain: &str) -> Result<(), Reply> {
        // Not strict: mail-auth's strict parsing turns every `l=` signature into an error
        // before verification; `covers_whole_body` applies our own `l=` rule instead.
        let Some(mut auth) = AuthenticatedMessage::parse_with_opts(message, None, false) else {
            return Err(Reply::new(500, "Failed to parse message headers"));
        };
        let body = message.get(auth.body_offset as usize..).unwrap_or_default();
        rehash_length_limited_bodies(&mut auth.body_hashes, body);
        let has_signature_header = auth
            .headers
            .iter()
            .any(|(name, _)| name.trim_ascii().eq_ignore_ascii_case(b"DKIM-Signature"));
        if !has_signature_header {
            return Err(Reply::no_dkim_signature());
        }
        let params = Parameters::new(&auth).with_txt_cache(&self.cache);
        let outputs = tokio::time::timeout(LOOKUP_TIMEOUT, self.authenticator.verify_dkim(params))
            .await
            .unwrap_or_default();
        let aligned_pass = outputs.iter().any(|out| {
            *out.result() == DkimResult::Pass
                && out
                    .signature()
                    .is_some_and(|sig| vouches_for(sig, from_domain, body))
        });
        if aligned_pass {
            return Ok(());
        }
        // A failure may come from a stale key after rotation: look the keys up afresh
        // next time.
        for sig in &auth.dkim_headers {
            let name = format!("{}._domainkey.{}", sig.header.s, sig.header.d);
            self.cache.remove::<str>(name.to_fqdn().as_ref());
        }
        log::info!(
            "DKIM verification failed for From domain {from_domain}: {:?}",
            outputs.iter().map(|o| o.result()).collect::<Vec<_>>()
        );
        Err(Reply::no_valid_dkim_signature())
    }
}

/// Whether a verified signature vouches for the message as the relay sees it: signed by
/// the `From:` domain itself, over the `From:` header (RFC 6376 §5.4: it MUST be signed;
/// a signature without it says nothing about the sender), and over the whole body.
fn vouches_for(sig: &Signature, from_domain: &str, body: &[u8]) -> bool {
    sig.d.eq_ignore_ascii_case(from_domain)
        && sig
            .h
            .iter()
            .any(|name| name.trim().eq_ignore_ascii_case("From"))
        && covers_whole_body(sig, body)
}

/// `l=` limits the signed body to its first octets (RFC 6376 §3.5), so anything after them
/// could have been appended by anyone (§8.2). A signature with `l=` counts only when
/// nothing follows the signed part, which is the case for an unmodified message.
fn covers_whole_body(sig: &Signature, body: &[u8]) -> bool {
    if sig.l == 0 {
        return true;
    }
    let mut counter = Counter(0);
    sig.cb.canonical_body(body, u64::MAX).write(&mut counter);
    counter.0 <= sig.l
}

/// The body hash of an `l=` signature per RFC 6376 §3.7: over the first `l` octets of the
/// *canonicalized* body. mail-auth cuts the raw body at `l` before canonicalizing, which
/// differs whenever canonicalization shortens the signed part (relaxed whitespace), so
/// signers that follow the RFC (OpenDKIM) would fail. The hashes of `l=0` stay mail-auth's.
fn rehash_length_limited_bodies(
    hashes: &mut [(Canonicalization, HashAlgorithm, u64, Vec<u8>)],
    body: &[u8],
) {
    for (cb, ha, l, bh) in hashes.iter_mut().filter(|(_, _, l, _)| *l > 0) {
        let mut canonical = Vec::new();
        cb.canonical_body(body, u64::MAX).write(&mut canonical);
        canonical.truncate(usize::try_from(*l).unwrap_or(usize::MAX));
        *bh = ha.hash(&canonical[..]).as_ref().to_vec();
    }
}

/// Counts canonicalized body octets instead of hashing them.
struct Counter(u64);

impl Writer for Counter {
    fn write(&mut self, buf: &[u8]) {
        self.0 += buf.len() as u64;
    }
}

/// A bounded TXT cache; the oldest entry goes first when full.
struct TxtCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

struct CacheInner {
    entries: HashMap<Box<str>, (Txt, Instant)>,
    order: VecDeque<Box<str>>,
}

impl TxtCache {
    fn new(capacity: usize) -> TxtCache {
        TxtCache {
            capacity,
            inner: Mutex::new(CacheInner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.lock();
        let (value, valid_until) = inner.entries.get(name)?;
        (*valid_until > Instant::now()).then(|| value.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.lock();
        let removed = inner.entries.remove(name).map(|(v, _)| v);
        if removed.is_some() {
            inner
                .order
                .retain(|k| <Box<str> as Borrow<Q>>::borrow(k) != name);
        }
        removed
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        let mut inner = self.lock();
        if inner
            .entries
            .insert(key.clone(), (value, valid_until))
            .is_none()
        {
            inner.order.push_back(key);
        }
        while inner.entries.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(hashes: &[(Canonicalization, HashAlgorithm, u64, Vec<u8>)]) -> Vec<u8> {
        hashes[0].3.clone()
    }

    #[test]
    fn length_limit_counts_canonical_octets() {
        // Relaxed canonicalization turns "a  b \r\n\r\n" into "a b\r\n" (5 octets); an
        // RFC signer puts l=5 and hashes exactly those.
        let body = b"a  b \r\n\r\n";
        let mut hashes = vec![(
            Canonicalization::Relaxed,
            HashAlgorithm::Sha256,
            5,
            Vec::new(),
        )];
        rehash_length_limited_bodies(&mut hashes, body);
        assert_eq!(
            hash_of(&hashes),
            HashAlgorithm::Sha256.hash(&b"a b\r\n"[..]).as_ref()
        );
        // Unlimited hashes are left alone.
        let mut unlimited = vec![(Canonicalization::Relaxed, HashAlgorithm::Sha256, 0, vec![1])];
        rehash_length_limited_bodies(&mut unlimited, body);
        assert_eq!(hash_of(&unlimited), [1]);
    }
}
