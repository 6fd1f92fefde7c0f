//! A local validating resolver: the relay checks DKIM and MTA-STS through it.

use operations::{Directory, Service, State};

use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Unbound];

const UNBOUND: &str = "unbound.service";

pub struct Unbound;

impl Component for Unbound {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "unbound",
            order: 40,
            units: &[UNBOUND],
            ports: |_| vec![(53, &["unbound"])],
            templates: templates!["unbound/chatmail.conf.j2", "unbound/resolv.conf"],
            ..Declaration::NONE
        }
    }

    fn install(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.package("unbound")
            .package("dns-root-data")
            // the real package: `dnsutils` is only a transitional name on 12 and a virtual
            // one on 13, which dpkg never lists as installed
            .package("bind9-dnsutils");
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(relay.file("/etc/resolv.conf", "unbound/resolv.conf")?);
        s.directory(Directory::new("/etc/unbound/unbound.conf.d"));
        s.file(
            relay
                .file(
                    "/etc/unbound/unbound.conf.d/chatmail.conf",
                    "unbound/chatmail.conf.j2",
                )?
                .restarts(UNBOUND),
        );
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.service(Service {
            unit: "systemd-resolved.service".into(),
            enabled: None,
            running: None,
            masked: true,
        });
        s.config_check(UNBOUND, "unbound-checkconf >/dev/null");
        s.service(Service::running(UNBOUND));
        s.service(Service::stopped("unbound-resolvconf.service"));
        Ok(())
    }
}
