//! `/new`: propose random credentials for a new address. Nothing is created here; doveauth
//! creates the account when a client first logs in with them.

use crate::config::Config;
use crate::fsutil::random_string;

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const PASSWORD_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\
!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// A fresh address of `username_max_length` characters and a password 3 characters longer
/// than the minimum, both from the OS CSPRNG.
pub fn create_credentials(config: &Config) -> Credentials {
    let user = random_string(LOWER_ALNUM, config.username_max_length);
    Credentials {
        email: format!("{user}@{}", config.mail_domain),
        password: random_string(PASSWORD_CHARS, config.password_min_length + 3),
    }
}

/// Percent-encode UTF-8, leaving unreserved characters and `keep` as they are.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `dclogin:` URL for self-signed relays: tells clients to accept the certificate (`ic=3`)
/// and, on IP-only relays, which host to use for IMAP and SMTP.
pub fn dclogin_url(config: &Config, creds: &Credentials) -> String {
    let hosts = match config.ipv4_relay {
        Some(ip) => format!("&ih={ip}&sh={ip}"),
        None => String::new(),
    };
    format!(
        "dclogin:{}?p={}&v=1{hosts}&ic=3",
        percent_encode(&creds.email, b"@[]"),
        percent_encode(&creds.password, b"")
    )
}

/// The JSON body: `email`, `password`, and in self-signed TLS mode `dclogin_url`.
pub fn response_json(config: &Config, creds: &Credentials) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = format!(
        "{{\"email\": {}, \"password\": {}",
        q(&creds.email),
        q(&creds.password)
    );
    if config.is_self_signed() {
        out.push_str(&format!(
            ", \"dclogin_url\": {}",
            q(&dclogin_url(config, creds))
        ));
    }
    out.push('}');
    out
}

/// Complete CGI response (headers, blank line, body).
pub fn cgi_response(config: &Config) -> String {
    let creds = create_credentials(config);
    format!(
        "Content-Type: application/json\n\n{}\n",
        response_json(config, &creds)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(domain: &str) -> Config {
        Config::parse(&format!("[params]\nmail_domain = {domain}\n"), "t.ini").unwrap()
    }

    #[test]
    fn credentials_shape() {
        let c = config("chat.example.org");
        let creds = create_credentials(&c);
        let (user, domain) = creds.email.split_once('@').unwrap();
        assert_eq!(domain, "chat.example.org");
        assert_eq!(user.len(), 9);
        assert!(crate::doveauth::is_valid_localpart(user));
        assert_eq!(creds.password.chars().count(), 12);
        assert!(creds.password.bytes().all(|b| PASSWORD_CHARS.contains(&b)));
        assert_ne!(create_credentials(&c), creds);
    }

    #[test]
    fn password_alphabet_is_letters_digits_punctuation() {
        assert_eq!(PASSWORD_CHARS.len(), 26 + 26 + 10 + 32);
        assert!(PASSWORD_CHARS.iter().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn acme_mode_has_no_dclogin() {
        let c = config("chat.example.org");
        let creds = Credentials {
            email: "abc@chat.example.org".into(),
            password: "p\"w\\".into(),
        };
        assert_eq!(
            response_json(&c, &creds),
            r#"{"email": "abc@chat.example.org", "password": "p\"w\\"}"#
        );
    }

    #[test]
    fn self_signed_domain_dclogin() {
        let c = config("_chat.example.org");
        let creds = Credentials {
            email: "abc@_chat.example.org".into(),
            password: "a@b+c d/%~".into(),
        };
        assert_eq!(
            dclogin_url(&c, &creds),
            "dclogin:abc@_chat.example.org?p=a%40b%2Bc%20d%2F%25~&v=1&ic=3"
        );
        let json: serde_json::Value = serde_json::from_str(&response_json(&c, &creds)).unwrap();
        assert_eq!(json["dclogin_url"], dclogin_url(&c, &creds));
    }

    #[test]
    fn ipv4_dclogin_has_hosts() {
        let c = config("203.0.113.7");
        let creds = create_credentials(&c);
        assert!(creds.email.ends_with("@[203.0.113.7]"));
        let url = dclogin_url(&c, &creds);
        assert!(
            url.starts_with(&format!("dclogin:{}?p=", creds.email)),
            "{url}"
        );
        assert!(
            url.ends_with("&v=1&ih=203.0.113.7&sh=203.0.113.7&ic=3"),
            "{url}"
        );
    }

    #[test]
    fn cgi_output() {
        let out = cgi_response(&config("chat.example.org"));
        let body = out
            .strip_prefix("Content-Type: application/json\n\n")
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
        assert!(
            json["email"]
                .as_str()
                .unwrap()
                .ends_with("@chat.example.org")
        );
        assert!(json.get("dclogin_url").is_none());
    }
}
