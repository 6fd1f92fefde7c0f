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

use mail_auth::common::resolver::ToFqdn;
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

    /// Require a valid signature whose `d=` equals `from_domain` (case-insensitive).
    /// `message` is the unstuffed message.
    pub async fn verify(&self, message: &[u8], from_domain: &str) -> Result<(), Reply> {
        let Some(auth) = AuthenticatedMessage::parse(message) else {
            return Err(Reply::new(500, "Failed to parse message headers"));
        };
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
                    .is_some_and(|sig| sig.d.eq_ignore_ascii_case(from_domain))
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
