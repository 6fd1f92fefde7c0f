//! DKIM signing of outgoing mail. The key is generated on the host and never leaves it.

use operations::{Command, Directory, Guard, Removed, Service, State};

use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&OpenDkim];

const OPENDKIM: &str = "opendkim.service";
pub const PRIVATE_KEY: &str = "/etc/dkimkeys/opendkim.private";

pub struct OpenDkim;

impl Component for OpenDkim {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "opendkim",
            order: 100,
            units: &[OPENDKIM],
            templates: templates![
                "opendkim/opendkim.conf.j2",
                "opendkim/KeyTable.j2",
                "opendkim/SigningTable.j2",
                "opendkim/10-prevent-memory-leak.conf",
            ],
            ..Declaration::NONE
        }
    }

    // a relay that sends through ipv4_relay leaves signing to that relay
    fn wanted(&self, relay: &Relay) -> bool {
        relay.config.ipv4_relay.is_none()
    }

    fn install(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.package("opendkim").package("opendkim-tools");
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        let d = &relay.config.mail_domain_bare;
        s.file(
            relay
                .file("/etc/opendkim.conf", "opendkim/opendkim.conf.j2")?
                .restarts(OPENDKIM),
        );
        for path in ["/etc/opendkim/screen.lua", "/etc/opendkim/final.lua"] {
            s.add(Removed {
                path: path.into(),
                notify: vec![operations::Notify::Restart(OPENDKIM.into())],
            });
        }
        s.directory(
            Directory::new("/etc/opendkim")
                .owner("opendkim", "opendkim")
                .mode(0o750),
        );
        s.directory(
            Directory::new("/etc/dkimkeys")
                .owner("opendkim", "opendkim")
                .mode(0o700),
        );
        for table in ["KeyTable", "SigningTable"] {
            s.file(
                relay
                    .file(
                        &format!("/etc/dkimkeys/{table}"),
                        &format!("opendkim/{table}.j2"),
                    )?
                    .owner("opendkim", "opendkim")
                    .restarts(OPENDKIM),
            );
        }
        s.directory(
            Directory::new("/var/spool/postfix/opendkim")
                .owner("opendkim", "opendkim")
                .mode(0o750),
        );
        s.add(
            Command::new(
                format!("DKIM key for {d}: generate on the host"),
                format!(
                    "set -e; su -s /bin/sh opendkim -c {}",
                    facts::shell::quote(&format!(
                        "/usr/sbin/opendkim-genkey -D /etc/dkimkeys -d {d} -s opendkim"
                    ))
                ),
                Guard::Creates(PRIVATE_KEY.into()),
            )
            .restarts(OPENDKIM),
        );
        s.file(
            relay
                .file(
                    "/etc/systemd/system/opendkim.service.d/10-prevent-memory-leak.conf",
                    "opendkim/10-prevent-memory-leak.conf",
                )?
                .restarts(OPENDKIM),
        );
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.config_check(OPENDKIM, "opendkim -n -x /etc/opendkim.conf");
        s.service(Service::running(OPENDKIM));
        Ok(())
    }
}
