//! iroh-relay: helps chat clients connect peer to peer for realtime apps; nginx forwards
//! /relay to it. Not installed when chatmail.ini names another relay.

use operations::{Service, State};

use super::{Component, Relay, pinned};

const UNIT: &str = "iroh-relay.service";

pub struct IrohRelay;

impl Component for IrohRelay {
    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.add(pinned::binary(relay, "iroh-relay", UNIT)?);
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
