//! lastlogin: receives Dovecot's `last_login` plugin writes and stores them, with day
//! granularity, as the mtime of the account's password file.

use crate::config::Config;
use crate::dict::DictHandler;

pub struct LastLoginDict {
    config: Config,
}

impl LastLoginDict {
    pub fn new(config: Config) -> LastLoginDict {
        LastLoginDict { config }
    }
}

impl DictHandler for LastLoginDict {
    /// Handles `shared/last-login/<addr>` = `<unix seconds>`; everything else is refused.
    fn set(&self, _user: &str, key: &str, value: Option<&str>) -> bool {
        let mut parts = key.split('/');
        let (Some("shared"), Some("last-login"), Some(addr)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Some(Ok(timestamp)) = value.map(|v| v.trim().parse::<i64>()) else {
            log::error!("last-login value for {addr:?} is not a timestamp: {value:?}");
            return false;
        };
        let user = match self.config.get_user(addr) {
            Ok(u) => u,
            Err(e) => {
                log::error!("last-login: {e}");
                return false;
            }
        };
        match user.set_last_login(timestamp) {
            Ok(()) => true,
            Err(e) => {
                log::error!("last-login for {addr:?} not recorded: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::{LookupResult, Session};

    fn setup() -> (tempfile::TempDir, LastLoginDict) {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config::parse(
            &format!(
                "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n",
                tmp.path().display()
            ),
            "t.ini",
        )
        .unwrap();
        (tmp, LastLoginDict::new(config))
    }

    #[test]
    fn set_updates_mtime_to_day() {
        let (_tmp, d) = setup();
        let addr = "abcdefghi@chat.example.org";
        let user = d.config.get_user(addr).unwrap();
        user.set_password("{SHA512-CRYPT}x").unwrap();
        let mut s = Session::new();
        for line in [
            format!("B7\t{addr}"),
            format!("S7\tshared/last-login/{addr}\t1767312345"),
        ] {
            assert_eq!(s.handle_line(&d, line.as_bytes()), None);
        }
        assert_eq!(s.handle_line(&d, b"C7").unwrap(), "O\n");
        assert_eq!(user.last_login(), Some(1_767_312_000));
    }

    #[test]
    fn missing_account_is_not_an_error() {
        let (_tmp, d) = setup();
        assert!(d.set(
            "u",
            "shared/last-login/nobody@chat.example.org",
            Some("1767312345")
        ));
    }

    #[test]
    fn refused_sets() {
        let (_tmp, d) = setup();
        for (key, value) in [
            ("shared/other/a@x", Some("1")),
            ("priv/last-login/a@x", Some("1")),
            ("shared/last-login", Some("1")),
            ("shared/last-login/a@x", None),
            ("shared/last-login/a@x", Some("yesterday")),
            ("shared/last-login/nodomain", Some("1")),
            ("", Some("1")),
        ] {
            assert!(!d.set("u", key, value), "{key:?} {value:?}");
        }
    }

    #[test]
    fn lookups_are_not_found() {
        let (_tmp, d) = setup();
        assert_eq!(
            d.lookup("shared/last-login/a@x", None),
            LookupResult::NotFound
        );
        assert!(d.iterate("shared/", None).is_empty());
    }
}
