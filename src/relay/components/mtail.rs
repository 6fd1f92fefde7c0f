//! mtail: relay metrics from the journal, only where chatmail.ini sets mtail_address; a relay
//! whose ini no longer sets it stops exporting them.

use operations::{Directory, Package, Removed, RemovedTree, Service, State};

use super::{Component, Declaration, Pin, Relay, pinned};

const UNIT: &str = "mtail.service";

pub const COMPONENTS: &[&dyn Component] = &[&Mtail];

const MTAIL: Pin = Pin {
    name: "mtail",
    path: "/usr/local/bin/mtail",
    member: Some("mtail"),
    builds: &[
        (
            "x86_64",
            "https://github.com/google/mtail/releases/download/v3.0.8/mtail_3.0.8_linux_amd64.tar.gz",
            "d55cb601049c5e61eabab29998dbbcea95d480e5448544f9470337ba2eea882e",
        ),
        (
            "aarch64",
            "https://github.com/google/mtail/releases/download/v3.0.8/mtail_3.0.8_linux_arm64.tar.gz",
            "f748db8ad2a1e0b63684d4c8868cf6a373a20f7e6922e5ece601fff0ee00eb1a",
        ),
    ],
};

/// With mtail_address unset, a metrics endpoint deployed earlier (by us or by cmdeploy,
/// which leaves a disabled unit behind) is stopped and removed, unit, binary and programs.
pub struct Mtail;

fn exports(relay: &Relay) -> bool {
    relay.config.mtail_address.is_some()
}

impl Component for Mtail {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "mtail",
            order: 150,
            optional: true,
            units: &[UNIT],
            pins: &[MTAIL],
            templates: templates!["mtail/mtail.service.j2", "mtail/delivered_mail.mtail"],
            ..Declaration::NONE
        }
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        if !exports(relay) {
            return Ok(());
        }
        // Debian's older mtail would shadow the pinned one
        s.add(Package {
            name: "mtail".into(),
            present: false,
        });
        s.add(pinned::binary(relay, &MTAIL, UNIT)?);
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        if !exports(relay) {
            return Ok(());
        }
        s.file(
            relay
                .file(
                    "/etc/systemd/system/mtail.service",
                    "mtail/mtail.service.j2",
                )?
                .restarts(UNIT),
        );
        s.directory(Directory::new("/etc/mtail"));
        s.file(
            relay
                .file(
                    "/etc/mtail/delivered_mail.mtail",
                    "mtail/delivered_mail.mtail",
                )?
                .restarts(UNIT),
        );
        Ok(())
    }

    fn activate(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        if exports(relay) {
            s.service(Service::running(UNIT));
            return Ok(());
        }
        s.service(Service::stopped(UNIT));
        for path in ["/etc/systemd/system/mtail.service", "/usr/local/bin/mtail"] {
            s.add(Removed {
                path: path.into(),
                notify: vec![],
            });
        }
        s.add(RemovedTree {
            path: "/etc/mtail".into(),
        });
        Ok(())
    }
}
