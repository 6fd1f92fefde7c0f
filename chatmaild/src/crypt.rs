//! `{SHA512-CRYPT}` password hashes as Dovecot verifies them (glibc `crypt(3)` `$6$`).

use sha_crypt::{PasswordHashRef, PasswordHasher, PasswordVerifier, ShaCrypt};

use crate::error::{Error, Result};
use crate::fsutil::random_bytes;

/// Dovecot's scheme prefix stored in front of the crypt string.
pub const SCHEME_PREFIX: &str = "{SHA512-CRYPT}";

/// The crate always spells out the rounds; glibc omits them when they are the default.
/// Both forms hash identically, so drop it to store exactly what `crypt(3)` would.
const DEFAULT_ROUNDS_FIELD: &str = "rounds=5000$";

/// Hash a cleartext password with a fresh 16-character salt and default rounds.
pub fn hash_password(cleartext: &str) -> Result<String> {
    // 12 random bytes encode to the 16 salt characters glibc uses at most.
    let mut salt = [0u8; 12];
    random_bytes(&mut salt);
    let hash = ShaCrypt::SHA512
        .hash_password_with_salt(cleartext.as_bytes(), &salt)
        .map_err(|e| Error::Hash(e.to_string()))?;
    let crypt = hash.as_str();
    let crypt = match crypt.strip_prefix("$6$") {
        Some(rest) => format!(
            "$6${}",
            rest.strip_prefix(DEFAULT_ROUNDS_FIELD).unwrap_or(rest)
        ),
        None => return Err(Error::Hash(format!("unexpected hash format {crypt:?}"))),
    };
    Ok(format!("{SCHEME_PREFIX}{crypt}"))
}

/// Check a cleartext against a stored hash (with or without the `{SHA512-CRYPT}` prefix).
pub fn verify_password(cleartext: &str, stored: &str) -> bool {
    let crypt = stored.strip_prefix(SCHEME_PREFIX).unwrap_or(stored);
    let Ok(hash) = PasswordHashRef::new(crypt) else {
        return false;
    };
    ShaCrypt::SHA512
        .verify_password(cleartext.as_bytes(), hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced by Python's `crypt.crypt` (glibc) and `openssl passwd -6`.
    const VECTORS: &[(&str, &str)] = &[
        (
            "s3cr3t\"pw1",
            "$6$Y3kmv0Hq2RbEGCtm$ETo8czwnZQcoVSzep7FW2p0hvbSmXhsG6Sx2qsi2G2H86gRfyg3ytpZqKYQnXiJSsi/C6aVmGW2mzlARh5syQ0",
        ),
        (
            "password123",
            "$6$abcdefgh$JXQhuMnEhPy/o0T1OLfDpNXbjYFiJ6fFfmks.NfA2n4NxyuJq7ngEmJqQ8mzFs4Ca7ePZvYwSPzZYxaXuOrv.0",
        ),
        (
            "ünïcödé pass\\word",
            "$6$rounds=5000$0123456789abcdef$5r23kjeu1OYW89AoQjzaB6sS11fWX1j8V9BVlAUjlpyfvaXasFHm0PCQC0ClbA5sI51NOkBo.JvslKXkEUXnc1",
        ),
        (
            "",
            "$6$empty$MWslJBrCvUsbDfvDkNQwBNtJFEGiZ5CHosSR8Ol/yMiSd9JINPGkSH4OfOOVEIp87YcT49Wr.Qp4a8bJCR6y2/",
        ),
        (
            "chatmail-Pass!",
            "$6$Q9zU1Ewvh3m1o5Ir$l0wJ8oB50ONeaWbAfwfEMxG9tEfcoIdvzEWxjZESIx4dXjr/GQupyLACcprdaji3n7nMlAUzn8kj6mWWqSpu21",
        ),
    ];

    #[test]
    fn verifies_glibc_and_openssl_hashes() {
        for (pw, hash) in VECTORS {
            assert!(verify_password(pw, hash), "{pw:?}");
            assert!(verify_password(pw, &format!("{SCHEME_PREFIX}{hash}")));
            assert!(!verify_password(&format!("{pw}x"), hash), "{pw:?}");
        }
        let long = "x".repeat(100);
        assert!(verify_password(
            &long,
            "$6$short$ekjyMbS/hDWOjuyihAdbk71fqnHxbrFF.6B4CbnFYxTweA4BjyStbfZzcp4.pfb7WSj59R3FftgdrAwZxKeAT0"
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(!verify_password("x", ""));
        assert!(!verify_password("x", "{SHA512-CRYPT}"));
        assert!(!verify_password("x", "$6$"));
        assert!(!verify_password("x", "$1$abc$def"));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn hash_format_matches_crypt3() {
        let h = hash_password("s3cr3t\"pw1").unwrap();
        let crypt = h.strip_prefix(SCHEME_PREFIX).unwrap();
        let fields: Vec<&str> = crypt.split('$').collect();
        assert_eq!(fields.len(), 4, "{crypt}");
        assert_eq!(fields[1], "6");
        assert_eq!(fields[2].len(), 16);
        assert_eq!(fields[3].len(), 86);
        let alphabet = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
        };
        assert!(alphabet(fields[2]) && alphabet(fields[3]));
        assert!(!h.contains('\n'));
        assert!(verify_password("s3cr3t\"pw1", &h));
        assert!(!verify_password("s3cr3t\"pw2", &h));
        assert_ne!(
            h,
            hash_password("s3cr3t\"pw1").unwrap(),
            "salt must be random"
        );
    }

    /// Cross-check our hashes with glibc through Python's `crypt` module when available.
    #[test]
    fn glibc_accepts_our_hashes() {
        let script = "import sys, warnings\nwarnings.simplefilter('ignore')\nimport crypt\n\
                      sys.stdout.write(crypt.crypt(sys.argv[1], sys.argv[2]))";
        for pw in ["s3cr3t\"pw1", "ünïcödé pass\\word", "a b\tc"] {
            let ours = hash_password(pw).unwrap();
            let crypt = ours.strip_prefix(SCHEME_PREFIX).unwrap();
            let out = std::process::Command::new("python3")
                .args(["-c", script, pw, crypt])
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    assert_eq!(String::from_utf8(o.stdout).unwrap(), crypt, "{pw:?}");
                }
                _ => {
                    eprintln!(
                        "skipping glibc cross-check: python3 with crypt module not available"
                    );
                    return;
                }
            }
        }
    }
}
