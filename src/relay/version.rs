//! /etc/chatmail-version: which deploy tool version configured the host.

use operations::{File, State};

use super::{Component, Relay};

pub struct Version;

impl Component for Version {
    fn activate(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(File::new(
            "/etc/chatmail-version",
            relay.options.version.clone(),
        ));
        Ok(())
    }
}
