//! SMTP: submission for the relay's users, MX for the world, filtermail in between.

use operations::{Command, Guard, Removed, Service, State};

use super::release::Release;
use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Postfix];

const POSTFIX: &str = "postfix.service";

pub struct Postfix;

impl Component for Postfix {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "postfix",
            order: 120,
            units: &[POSTFIX],
            ports: |c| {
                let smtpd: &[&str] = &["master", "smtpd"];
                [
                    25,
                    465,
                    587,
                    c.postfix_reinject_port,
                    c.postfix_reinject_port_incoming,
                ]
                .map(|port| (port, smtpd))
                .to_vec()
            },
            templates: templates![
                "postfix/main.cf.j2",
                "postfix/master.cf.j2",
                "postfix/submission_header_cleanup",
                "postfix/lmtp_header_cleanup",
                "postfix/smtp_tls_policy_map",
                "postfix/login_map",
                "postfix/10_restart.conf",
            ],
            ..Declaration::NONE
        }
    }

    fn install(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.package("postfix");
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        for (path, template) in [
            ("/etc/postfix/main.cf", "postfix/main.cf.j2"),
            ("/etc/postfix/master.cf", "postfix/master.cf.j2"),
            (
                "/etc/postfix/submission_header_cleanup",
                "postfix/submission_header_cleanup",
            ),
            (
                "/etc/postfix/lmtp_header_cleanup",
                "postfix/lmtp_header_cleanup",
            ),
            (
                "/etc/postfix/smtp_tls_policy_map",
                "postfix/smtp_tls_policy_map",
            ),
            ("/etc/postfix/login_map", "postfix/login_map"),
            (relay.release.postfix_dropin(), "postfix/10_restart.conf"),
        ] {
            s.file(relay.file(path, template)?.restarts(POSTFIX));
        }
        if relay.release == Release::Trixie {
            // 13's package leaves the queue to the first start, and Dovecot, started
            // first, puts its LMTP and auth sockets into private/ (12's postinst made it)
            s.add(Command::new(
                "postfix: create the queue directories",
                "postfix check",
                Guard::Unless("test -d /var/spool/postfix/private".into()),
            ));
            // a host upgraded from 12 keeps the drop-in that does nothing on 13
            s.add(Removed {
                path: Release::Bookworm.postfix_dropin().into(),
                notify: vec![],
            });
        }
        Ok(())
    }

    fn activate(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        if relay.release == Release::Trixie {
            // 12's postfix.service only started the instance postfix@-, which keeps running
            // through a dist-upgrade; 13's postfix.service is the daemon itself and cannot
            // (re)start beside it ("conflicting jobs", measured). Its stop runs 13's
            // postfix@.service, made for other instances: `postfix stop` finds no
            // /etc/postfix-/main.cf, systemd kills the daemons and leaves the unit failed
            // (measured), so the stop clears that too
            const OLD_INSTANCE: &str = "postfix@-.service";
            s.add(
                Command::new(
                    format!("{OLD_INSTANCE}: stop 12's instance"),
                    format!("systemctl stop {OLD_INSTANCE}; systemctl reset-failed {OLD_INSTANCE}"),
                    Guard::OnlyIf(format!(
                        "systemctl is-active -q {OLD_INSTANCE} || systemctl is-failed -q {OLD_INSTANCE}"
                    )),
                )
                .uses_systemd(),
            );
        }
        // main.cf and master.cf parse, and `postfix check` finds nothing fatal
        s.config_check(
            POSTFIX,
            "postconf >/dev/null && postconf -M >/dev/null && postfix check",
        );
        s.service(if relay.options.disable_mail {
            Service::stopped(POSTFIX)
        } else {
            Service::running(POSTFIX)
        });
        Ok(())
    }
}
