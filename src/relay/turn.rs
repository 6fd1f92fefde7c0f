//! chatmail-turn: TURN for calls; chatmail-metadata hands out credentials from its socket.

use operations::{Service, State};

use super::{Component, Relay, pinned};

const UNIT: &str = "turnserver.service";

pub struct Turn;

impl Component for Turn {
    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.add(pinned::binary(relay, "chatmail-turn", UNIT)?);
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(
            relay
                .file(
                    "/etc/systemd/system/turnserver.service",
                    "iroh/turnserver.service.j2",
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
