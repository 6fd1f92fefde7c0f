//! chatmail-turn: TURN for calls; chatmail-metadata hands out credentials from its socket.

use operations::{Service, State};

use super::{Component, Declaration, Pin, Relay, pinned};

const UNIT: &str = "turnserver.service";

pub const COMPONENTS: &[&dyn Component] = &[&Turn];

const TURN: Pin = Pin {
    name: "chatmail-turn",
    path: "/usr/local/bin/chatmail-turn",
    member: None,
    builds: &[
        (
            "x86_64",
            "https://github.com/chatmail/chatmail-turn/releases/download/v0.4/chatmail-turn-x86_64-linux",
            "1ec1f5c50122165e858a5a91bcba9037a28aa8cb8b64b8db570aa457c6141a8a",
        ),
        (
            "aarch64",
            "https://github.com/chatmail/chatmail-turn/releases/download/v0.4/chatmail-turn-aarch64-linux",
            "0fb3e792419494e21ecad536464929dba706bb2c88884ed8f1788141d26fc756",
        ),
    ],
};

pub struct Turn;

impl Component for Turn {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "turn",
            order: 50,
            optional: true,
            units: &[UNIT],
            pins: &[TURN],
            templates: templates!["iroh/turnserver.service.j2"],
            ..Declaration::NONE
        }
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.add(pinned::binary(relay, &TURN, UNIT)?);
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
