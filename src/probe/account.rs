//! Fresh account credentials: relays create an account on its first login, so a random
//! address that fits the relay's rules is a new account.

use rand::Rng;
use rand::distributions::Alphanumeric;

/// An address and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub address: String,
    pub password: String,
}

/// The relay's rules for new accounts (the chatmail.ini keys of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The domain part of addresses (`[ip]` on IPv4 relays).
    pub mail_domain: String,
    pub username_min_length: usize,
    pub username_max_length: usize,
    pub password_min_length: usize,
}

impl Rules {
    pub fn from_config(config: &chatmaild::Config) -> Rules {
        Rules {
            mail_domain: config.mail_domain.clone(),
            username_min_length: config.username_min_length,
            username_max_length: config.username_max_length,
            password_min_length: config.password_min_length,
        }
    }
}

/// Longer passwords cost nothing and keep a fresh account from being guessed while the
/// probe runs.
const PASSWORD_EXTRA: usize = 12;

impl Account {
    /// A random address that the relay will create on first login: lower-case letters and
    /// digits only (the relay allows `[a-z0-9._-]`, the others are avoided to stay clear
    /// of leading-dot and similar edge cases), length within the relay's bounds.
    pub fn fresh(rules: &Rules) -> Account {
        let mut rng = rand::thread_rng();
        let min = rules.username_min_length.max(1);
        let max = rules.username_max_length.max(min);
        let len = rng.gen_range(min..=max);
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        // a letter first: some clients mis-handle all-digit local parts
        let first = CHARS[rng.gen_range(0..26)] as char;
        let rest: String = (1..len)
            .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
            .collect();
        let password: String = (0..rules.password_min_length + PASSWORD_EXTRA)
            .map(|_| rng.sample(Alphanumeric) as char)
            .collect();
        Account {
            address: format!("{first}{rest}@{}", rules.mail_domain),
            password,
        }
    }

    /// The local part (before the `@`).
    pub fn user(&self) -> &str {
        self.address.split('@').next().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min: usize, max: usize) -> Rules {
        Rules {
            mail_domain: "_r.test".into(),
            username_min_length: min,
            username_max_length: max,
            password_min_length: 9,
        }
    }

    #[test]
    fn fresh_accounts_fit_the_rules_and_differ() {
        for (min, max) in [(9, 9), (3, 20)] {
            for _ in 0..50 {
                let a = Account::fresh(&rules(min, max));
                let (user, domain) = a.address.split_once('@').unwrap();
                assert_eq!(domain, "_r.test");
                assert!((min..=max).contains(&user.len()), "{user}");
                assert!(
                    user.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                );
                assert!(user.as_bytes()[0].is_ascii_lowercase());
                assert!(a.password.len() >= 9);
                assert_eq!(a.user(), user);
            }
        }
        assert_ne!(Account::fresh(&rules(9, 9)), Account::fresh(&rules(9, 9)));
    }

    #[test]
    fn rules_come_from_chatmail_ini() {
        let config = chatmaild::Config::parse(
            "[params]\nmail_domain = _r.test\nusername_min_length = 5\n",
            "chatmail.ini",
        )
        .unwrap();
        let r = Rules::from_config(&config);
        assert_eq!((r.username_min_length, r.username_max_length), (5, 9));
        assert_eq!(r.mail_domain, "_r.test");
    }
}
