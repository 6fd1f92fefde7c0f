//! /etc/chatmail-version: which deploy tool version configured the host.

use operations::{File, State};

use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Version];

pub struct Version;

impl Component for Version {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "version",
            order: 160,
            ..Declaration::NONE
        }
    }

    fn activate(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(File::new(
            "/etc/chatmail-version",
            relay.options.version.clone(),
        ));
        Ok(())
    }
}
