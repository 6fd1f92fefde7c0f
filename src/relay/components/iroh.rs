//! iroh-relay: helps chat clients connect peer to peer for realtime apps; nginx forwards
//! /relay to it. Not installed when chatmail.ini names another relay.

use operations::{Service, State};

use super::{Component, Declaration, Pin, Relay, pinned};

const UNIT: &str = "iroh-relay.service";

pub const COMPONENTS: &[&dyn Component] = &[&IrohRelay];

const IROH_RELAY: Pin = Pin {
    name: "iroh-relay",
    path: "/usr/local/bin/iroh-relay",
    member: Some("./iroh-relay"),
    builds: &[
        (
            "x86_64",
            "https://github.com/n0-computer/iroh/releases/download/v0.35.0/iroh-relay-v0.35.0-x86_64-unknown-linux-musl.tar.gz",
            "45c81199dbd70f8c4c30fef7f3b9727ca6e3cea8f2831333eeaf8aa71bf0fac1",
        ),
        (
            "aarch64",
            "https://github.com/n0-computer/iroh/releases/download/v0.35.0/iroh-relay-v0.35.0-aarch64-unknown-linux-musl.tar.gz",
            "f8ef27631fac213b3ef668d02acd5b3e215292746a3fc71d90c63115446008b1",
        ),
    ],
};

pub struct IrohRelay;

impl Component for IrohRelay {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "iroh-relay",
            order: 60,
            optional: true,
            units: &[UNIT],
            ports: |_| vec![(3340, &["iroh-relay"])],
            pins: &[IROH_RELAY],
            templates: templates!["iroh/iroh-relay.service", "iroh/iroh-relay.toml"],
            ..Declaration::NONE
        }
    }

    // a relay named in chatmail.ini replaces the local one (upstream still ran it)
    fn wanted(&self, relay: &Relay) -> bool {
        relay.config.enable_iroh_relay
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.add(pinned::binary(relay, &IROH_RELAY, UNIT)?);
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(
            relay
                .file(
                    "/etc/systemd/system/iroh-relay.service",
                    "iroh/iroh-relay.service",
                )?
                .restarts(UNIT),
        );
        s.file(
            relay
                .file("/etc/iroh-relay.toml", "iroh/iroh-relay.toml")?
                .restarts(UNIT),
        );
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.service(Service::running(UNIT));
        Ok(())
    }
}
