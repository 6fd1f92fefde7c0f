//! A test-only optional component: adding it took this file and its template, nothing else.
//! It is off unless a test turns it on (on its own thread), so other tests never see it.

use std::cell::Cell;

use operations::{Service, State};
use serde_json::json;

use super::super::{Component, Declaration, Pin, Relay, pinned};

const UNIT: &str = "chatmail-echo.service";
const PORT: u16 = 7007;

pub const COMPONENTS: &[&dyn Component] = &[&Echo];

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

const ECHO: Pin = Pin {
    name: "chatmail-echo",
    path: "/usr/local/bin/chatmail-echo",
    member: None,
    builds: &[(
        "x86_64",
        "https://example.org/chatmail-echo-x86_64",
        "0000000000000000000000000000000000000000000000000000000000000000",
    )],
};

pub struct Echo;

impl Component for Echo {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "echo",
            order: 155,
            optional: true,
            units: &[UNIT],
            ports: |_| vec![(PORT, &["chatmail-echo"])],
            pins: &[ECHO],
            templates: templates!["test-only/chatmail-echo.service.j2"],
            ..Declaration::NONE
        }
    }

    fn wanted(&self, _relay: &Relay) -> bool {
        ON.with(Cell::get)
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.add(pinned::binary(relay, &ECHO, UNIT)?);
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        let unit = relay.render(
            "test-only/chatmail-echo.service.j2",
            json!({ "echo_port": PORT }),
        )?;
        s.file(operations::File::new(format!("/etc/systemd/system/{UNIT}"), unit).restarts(UNIT));
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.service(Service::running(UNIT));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ::chatmaild::config::Config;
    use operations::Resource;

    use super::super::super::{every_template, optional, pin, ports, units};
    use super::*;
    use crate::relay::tests::state_with_skip;

    const INI: &str = "[params]\nmail_domain = chat.example.org\n";

    fn has_echo(state: &State) -> bool {
        state.resources.iter().any(|r| match r {
            Resource::File(f) => f.path == "/etc/systemd/system/chatmail-echo.service",
            _ => false,
        })
    }

    #[test]
    fn a_new_component_is_deployed_skipped_reported_and_checked_from_its_declaration() {
        ON.with(|on| on.set(true));
        let state = state_with_skip(INI, false, &[]);
        assert!(has_echo(&state), "deployed");
        assert!(
            state.resources.iter().any(|r| matches!(r,
                Resource::Download(d) if d.path == "/usr/local/bin/chatmail-echo")),
            "its pinned download"
        );
        assert!(
            !has_echo(&state_with_skip(INI, false, &["echo"])),
            "--skip echo"
        );
        assert!(optional().contains(&"echo"), "--skip takes it");
        assert!(units().contains(&UNIT), "status reports it");
        let config = Config::parse(INI, "chatmail.ini").unwrap();
        assert!(
            ports(&config).contains(&(PORT, &["chatmail-echo"][..])),
            "preflight"
        );
        assert!(
            pin("chatmail-echo").is_some(),
            "--binary chatmail-echo=PATH"
        );
        assert!(
            every_template().any(|t| t.name == "test-only/chatmail-echo.service.j2"),
            "its template is compiled in"
        );
    }

    #[test]
    fn it_is_off_for_every_other_test() {
        assert!(!has_echo(&state_with_skip(INI, false, &[])));
    }
}
