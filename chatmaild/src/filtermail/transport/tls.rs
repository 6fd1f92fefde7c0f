//! TLS client settings for remote delivery.
//!
//! Real domains must present a certificate valid for the MX host (web PKI roots bundled,
//! like the push client, so the host's CA store does not matter). Relays on IP addresses
//! and `_`-prefixed test domains run with self-signed certificates; for them the
//! connection is encrypted but the certificate is not checked (upstream does the same,
//! and the relay's own Postfix TLS policy map says `encrypt` for these).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How the TLS peer of one destination is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Encryption required, certificate must verify.
    Verify,
    /// Encryption required, any certificate accepted.
    Encrypt,
    /// No TLS at all (the `nauta.cu` special case upstream keeps).
    None,
}

impl TlsPolicy {
    /// The policy for a recipient domain (IP literals included, in brackets).
    pub fn for_domain(domain: &str) -> TlsPolicy {
        if domain.starts_with('_') || domain.starts_with('[') {
            TlsPolicy::Encrypt
        } else if domain.eq_ignore_ascii_case("nauta.cu") {
            TlsPolicy::None
        } else {
            TlsPolicy::Verify
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client configs for both authenticated policies, built once.
#[derive(Clone)]
pub struct TlsConfigs {
    pub verify: Arc<ClientConfig>,
    pub encrypt: Arc<ClientConfig>,
}

impl TlsConfigs {
    pub fn new() -> Result<TlsConfigs, String> {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let verify = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let encrypt = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth();
        Ok(TlsConfigs {
            verify: Arc::new(verify),
            encrypt: Arc::new(encrypt),
        })
    }

    pub fn for_policy(&self, policy: TlsPolicy) -> Option<Arc<ClientConfig>> {
        match policy {
            TlsPolicy::Verify => Some(self.verify.clone()),
            TlsPolicy::Encrypt => Some(self.encrypt.clone()),
            TlsPolicy::None => None,
        }
    }
}

/// Accepts any certificate but still checks the handshake signatures, so the session is
/// at least bound to the key the peer presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(TlsPolicy::for_domain("_relay.test"), TlsPolicy::Encrypt);
        assert_eq!(TlsPolicy::for_domain("[203.0.113.7]"), TlsPolicy::Encrypt);
        assert_eq!(TlsPolicy::for_domain("nauta.cu"), TlsPolicy::None);
        assert_eq!(TlsPolicy::for_domain("chat.example.org"), TlsPolicy::Verify);
        assert_eq!(TlsPolicy::for_domain("a_b.example.org"), TlsPolicy::Verify);
    }

    #[test]
    fn configs_build() {
        let configs = TlsConfigs::new().unwrap();
        assert!(configs.for_policy(TlsPolicy::None).is_none());
        let encrypt = configs.for_policy(TlsPolicy::Encrypt).unwrap();
        assert!(Arc::ptr_eq(&encrypt, &configs.encrypt));
        let verify = configs.for_policy(TlsPolicy::Verify).unwrap();
        assert!(Arc::ptr_eq(&verify, &configs.verify));
    }
}
