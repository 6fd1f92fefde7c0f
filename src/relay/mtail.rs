//! mtail: relay metrics from the journal, only where chatmail.ini sets mtail_address; a relay
//! whose ini no longer sets it stops exporting them.

use operations::{Directory, Package, Removed, RemovedTree, Service, State};

use super::{Component, Relay, pinned};

const UNIT: &str = "mtail.service";

pub struct Mtail;

impl Component for Mtail {
    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        // Debian's older mtail would shadow the pinned one
        s.add(Package {
            name: "mtail".into(),
            present: false,
        });
        s.add(pinned::binary(relay, "mtail", UNIT)?);
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
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

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.service(Service::running(UNIT));
        Ok(())
    }
}

/// mtail_address unset: a metrics endpoint deployed earlier (by us or by cmdeploy, which
/// leaves a disabled unit behind) is stopped and removed, unit, binary and programs.
pub struct MtailOff;

impl Component for MtailOff {
    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
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
