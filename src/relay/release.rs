//! The Debian release of the host: what differs between 12 and 13 in packages, config
//! formats and unit drop-ins is decided here, from the host's `/etc/os-release`.

/// A Debian release the relay model is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Release {
    /// Debian 12: Dovecot 2.3 (chatmail's build where it can be had).
    #[default]
    Bookworm,
    /// Debian 13: Debian's Dovecot 2.4, Postfix 3.10.
    Trixie,
}

/// Every release, for the facts asked before the host's is known.
pub const ALL: [Release; 2] = [Release::Bookworm, Release::Trixie];

impl Release {
    /// The release of a host; `None` for one the model is not written for (preflight
    /// refuses it with its own message).
    pub fn of(os: &facts::OsRelease) -> Option<Release> {
        match (os.id.as_str(), os.version_id.as_str()) {
            ("debian", "12") => Some(Release::Bookworm),
            ("debian", "13") => Some(Release::Trixie),
            _ => None,
        }
    }

    /// `VERSION_ID` in os-release.
    pub fn version_id(self) -> &'static str {
        match self {
            Release::Bookworm => "12",
            Release::Trixie => "13",
        }
    }

    /// chatmail's Dovecot build exists for Debian 12 only (its .debs need libicu72; installed
    /// on 13 they leave apt broken).
    pub fn has_chatmail_dovecot(self) -> bool {
        self == Release::Bookworm
    }

    /// Dovecot 2.4 refuses a 2.3 config and has no dict passdb/userdb.
    pub fn dovecot_24(self) -> bool {
        self == Release::Trixie
    }

    /// Where the Postfix restart drop-in takes effect: on 13 `postfix.service` is the daemon
    /// itself, and a drop-in for the `postfix@` instances does nothing there.
    pub fn postfix_dropin(self) -> &'static str {
        match self {
            Release::Bookworm => "/etc/systemd/system/postfix@.service.d/10_restart.conf",
            Release::Trixie => "/etc/systemd/system/postfix.service.d/10_restart.conf",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(id: &str, version: &str) -> facts::OsRelease {
        facts::OsRelease {
            id: id.into(),
            version_id: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn releases_come_from_os_release() {
        assert_eq!(Release::of(&os("debian", "12")), Some(Release::Bookworm));
        assert_eq!(Release::of(&os("debian", "13")), Some(Release::Trixie));
        assert_eq!(Release::of(&os("debian", "11")), None);
        assert_eq!(Release::of(&os("ubuntu", "12")), None);
        for r in ALL {
            assert_eq!(Release::of(&os("debian", r.version_id())), Some(r));
        }
    }
}
