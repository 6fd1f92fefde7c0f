//! IMAP and local delivery (LMTP), with accounts from doveauth.

use operations::{Command, Guard, Removed, Service, State};

use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Dovecot];

const DOVECOT: &str = "dovecot.service";

/// Debian 13's Dovecot 2.4 and what the Lua passdb/userdb (auth.lua) needs.
pub(in crate::relay) const DEBIAN_24_PACKAGES: &[&str] = &[
    "dovecot-core",
    "dovecot-imapd",
    "dovecot-lmtpd",
    "dovecot-auth-lua",
    "lua-socket",
    "lua-cjson",
];
/// The pin chatmail's 2.3 build leaves: it would forbid Debian's 2.4 packages.
const CHATMAIL_PIN: &str = "/etc/apt/preferences.d/pin-dovecot";

pub struct Dovecot;

impl Component for Dovecot {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "dovecot",
            order: 110,
            units: &[DOVECOT],
            ports: |_| {
                let dovecot: &[&str] = &["dovecot", "imap-login"];
                vec![(143, dovecot), (993, dovecot)]
            },
            templates: templates![
                "dovecot/dovecot.conf.j2",
                "dovecot/dovecot24.conf.j2",
                "dovecot/auth.conf",
                "dovecot/auth.lua",
                "dovecot/push_notification.lua",
                "dovecot/10_restart.conf",
            ],
            ..Declaration::NONE
        }
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        if relay.release.has_chatmail_dovecot() {
            super::dovecot_build::add(&relay.options.dovecot_debs, s);
        } else {
            s.add(Removed {
                path: CHATMAIL_PIN.into(),
                notify: vec![],
            });
            for name in DEBIAN_24_PACKAGES {
                s.package(name);
            }
        }
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        let (config, auth) = if relay.release.dovecot_24() {
            (
                "dovecot/dovecot24.conf.j2",
                ("/etc/dovecot/auth.lua", "dovecot/auth.lua"),
            )
        } else {
            (
                "dovecot/dovecot.conf.j2",
                ("/etc/dovecot/auth.conf", "dovecot/auth.conf"),
            )
        };
        s.file(
            relay
                .file("/etc/dovecot/dovecot.conf", config)?
                .restarts(DOVECOT),
        );
        s.file(relay.file(auth.0, auth.1)?.restarts(DOVECOT));
        s.file(
            relay
                .file(
                    "/etc/dovecot/push_notification.lua",
                    "dovecot/push_notification.lua",
                )?
                .restarts(DOVECOT),
        );
        s.file(
            relay
                .file(
                    "/etc/systemd/system/dovecot.service.d/10_restart.conf",
                    "dovecot/10_restart.conf",
                )?
                .restarts(DOVECOT),
        );
        // saves a stat of /etc/localtime per time call in every Dovecot process
        s.add(
            Command::new(
                "/etc/environment: add TZ=:/etc/localtime",
                "echo 'TZ=:/etc/localtime' >> /etc/environment",
                Guard::Unless("grep -qx 'TZ=:/etc/localtime' /etc/environment".into()),
            )
            .restarts(DOVECOT),
        );
        Ok(())
    }

    fn activate(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.config_check(DOVECOT, "doveconf -n >/dev/null");
        s.service(if relay.options.disable_mail {
            Service::stopped(DOVECOT)
        } else {
            Service::running(DOVECOT)
        });
        Ok(())
    }
}
