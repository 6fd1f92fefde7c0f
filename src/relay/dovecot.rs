//! IMAP and local delivery (LMTP), with accounts from doveauth.

use operations::{Command, Guard, Service, State};

use super::{Component, Relay};

const DOVECOT: &str = "dovecot.service";

pub struct Dovecot;

impl Component for Dovecot {
    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        super::dovecot_build::add(&relay.options.dovecot_debs, s);
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(
            relay
                .file("/etc/dovecot/dovecot.conf", "dovecot/dovecot.conf.j2")?
                .restarts(DOVECOT),
        );
        s.file(
            relay
                .file("/etc/dovecot/auth.conf", "dovecot/auth.conf")?
                .restarts(DOVECOT),
        );
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
