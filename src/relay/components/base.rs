//! Accounts, the base system, legacy cleanup and the journal.

use operations::{Directory, File, Group, Removed, RemovedTree, Service, State, User};

use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Accounts, &Base, &Legacy, &Journald];

/// System accounts, created before any package: Postfix must be in the opendkim group to
/// reach the signing socket, whatever the package created.
pub struct Accounts;

impl Component for Accounts {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "accounts",
            order: 5,
            ..Declaration::NONE
        }
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        accounts(relay, s);
        Ok(())
    }
}

fn accounts(relay: &Relay, s: &mut State) {
    s.add(Group {
        name: "vmail".into(),
        system: true,
    });
    s.add(User {
        home: Some("/home/vmail".into()),
        group: Some("vmail".into()),
        ..User::system("vmail")
    });
    s.add(User {
        home: Some("/home/iroh".into()),
        ..User::system("iroh")
    });
    if relay.config.ipv4_relay.is_none() {
        s.add(Group {
            name: "opendkim".into(),
            system: true,
        });
        s.add(User {
            groups: vec!["opendkim".into()],
            ..User::system("opendkim")
        });
        s.add(User {
            groups: vec!["opendkim".into()],
            ..User::system("postfix")
        });
    }
}

pub struct Base;

impl Component for Base {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "base",
            order: 10,
            templates: templates!["base/00InstallRecommends"],
            ..Declaration::NONE
        }
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(relay.file(
            "/etc/apt/apt.conf.d/00InstallRecommends",
            "base/00InstallRecommends",
        )?);
        s.package("curl");
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.directory(Directory::new("/home/vmail").owner("vmail", "vmail"));
        s.directory(Directory::new("/home/iroh").owner("iroh", "iroh"));
        let mbox = relay.config.mailboxes_dir.display().to_string();
        s.directory(Directory::new(mbox).owner("vmail", "vmail").mode(0o700));
        s.file(File::new(
            "/etc/mailname",
            format!("{}\n", relay.config.mail_domain),
        ));
        Ok(())
    }
}

/// What older relays left behind, and what upstream's cmdeploy installs that this relay
/// replaces (its Python services lived in a virtualenv built from an uploaded sdist).
pub struct Legacy;

/// cmdeploy's Python install: our units and binaries replace everything in it.
const CMDEPLOY_TREES: &[&str] = &[
    "/usr/local/lib/chatmaild/venv",
    "/usr/local/lib/chatmaild/dist",
];

impl Component for Legacy {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "legacy",
            order: 20,
            ..Declaration::NONE
        }
    }

    fn install(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        for name in ["rspamd", "unbound-anchor", "resolvconf"] {
            s.add(operations::Package {
                name: name.into(),
                present: false,
            });
        }
        for path in [
            "/etc/cron.d/expunge",
            "/etc/cron.d/chatmail-metrics",
            "/etc/apt/keyrings/obs-home-deltachat.gpg",
            "/etc/mta-sts-daemon.yml",
            "/etc/systemd/system/mta-sts-daemon.service",
        ] {
            s.add(Removed {
                path: path.into(),
                notify: vec![],
            });
        }
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        for unit in [
            "echobot.service",
            "doveauth-dictproxy.service",
            "mta-sts-daemon.service",
        ] {
            s.service(Service::stopped(unit));
        }
        // after configure: the units that ran from the virtualenv are ours by now
        for path in CMDEPLOY_TREES {
            s.add(RemovedTree {
                path: (*path).into(),
            });
        }
        Ok(())
    }
}

/// Logs in RAM only, kept three days.
pub struct Journald;

impl Component for Journald {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "journald",
            order: 30,
            templates: templates!["systemd/journald.conf"],
            ..Declaration::NONE
        }
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(
            relay
                .file("/etc/systemd/journald.conf", "systemd/journald.conf")?
                .restarts("systemd-journald.service"),
        );
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.service(Service {
            enabled: None,
            ..Service::running("systemd-journald.service")
        });
        Ok(())
    }
}
