//! The relay's own services: the dict services Dovecot talks to, the daily jobs, and the
//! filtermail SMTP filter, all one multi-call Rust binary from this workspace, plus
//! chatmail.ini.

use operations::{Directory, File, Notify, Service, State, Symlink};
use serde_json::json;

use super::context::{BIN_DIR, INI_PATH};
use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Chatmaild, &Filtermail];

/// (unit, binary, description, socket, restart seconds, umask)
const DICT_SERVICES: &[(&str, &str, &str, &str, u32, &str)] = &[
    (
        "doveauth",
        "doveauth",
        "Chatmail dict authentication proxy for dovecot",
        "doveauth.socket",
        30,
        "0077",
    ),
    (
        "chatmail-metadata",
        "chatmail-metadata",
        "Chatmail dict proxy for IMAP METADATA",
        "metadata.socket",
        5,
        "0077",
    ),
    (
        "lastlogin",
        "lastlogin",
        "Dict proxy for last-login tracking",
        "lastlogin.socket",
        30,
        "",
    ),
];

/// (job, description, timer description, time, persistent, extra arguments)
const DAILY_JOBS: &[(&str, &str, &str, &str, bool, &str)] = &[
    (
        "chatmail-expire",
        "chatmail mail storage expiration job",
        "Run Daily chatmail-expire job",
        "*-*-* 00:02:00",
        false,
        " -v --remove",
    ),
    (
        "chatmail-fsreport",
        "chatmail file system storage reporting job",
        "Run Daily Chatmail fsreport Job",
        "*-*-* 08:02:00",
        true,
        "",
    ),
];

const FILTERMAIL_UNITS: &[(&str, &str, &str)] = &[
    (
        "filtermail.service",
        "outgoing",
        "chatmail outgoing mail filter",
    ),
    (
        "filtermail-incoming.service",
        "incoming",
        "chatmail incoming mail filter",
    ),
    (
        "filtermail-transport.service",
        "transport",
        "chatmail delivery to other relays",
    ),
];

/// `filtermail.service` -> `filtermail.socket`: same name, so systemd passes the socket's
/// fds to the service without further settings.
fn socket_unit(service: &str) -> String {
    format!("{}.socket", service.trim_end_matches(".service"))
}

/// What one filtermail mode listens on (`ListenStream=` values).
fn filtermail_addresses(relay: &Relay, mode: &str) -> Vec<String> {
    let c = &relay.config;
    let ports = match mode {
        "outgoing" => vec![c.filtermail_smtp_port],
        "incoming" => vec![
            c.filtermail_smtp_port_incoming,
            c.filtermail_http_port_incoming,
        ],
        _ => vec![c.filtermail_lmtp_port_transport],
    };
    ports
        .into_iter()
        .map(|port| std::net::SocketAddr::new(c.filtermail_host, port).to_string())
        .collect()
}

/// Programs with no unit of their own (run by Dovecot or from the timers above).
const HELPERS: &[&str] = &["chatmail-quota-expire"];

/// The one relay binary: every program above is a symlink to it, named as upstream names
/// them, and it runs as the name it is called by.
pub const MULTI_CALL: &str = "chatmaild";

/// Where the multi-call binary is installed.
pub fn multi_call_path() -> String {
    format!("{BIN_DIR}/{MULTI_CALL}")
}

/// The units that run the multi-call binary: a new binary restarts them all.
fn units_running_it() -> Vec<String> {
    DICT_SERVICES
        .iter()
        .map(|(unit, ..)| format!("{unit}.service"))
        .chain(FILTERMAIL_UNITS.iter().map(|(unit, ..)| unit.to_string()))
        .collect()
}

/// `{BIN_DIR}/program -> chatmaild`; pointing it elsewhere restarts `units`.
fn program_link(program: &str, units: &[&str]) -> Symlink {
    Symlink {
        path: format!("{BIN_DIR}/{program}"),
        target: multi_call_path(),
        notify: units
            .iter()
            .map(|unit| Notify::Restart(unit.to_string()))
            .collect(),
    }
}

fn dict_runtime_dir(unit: &str) -> String {
    if unit == "lastlogin" {
        "chatmail-lastlogin".into()
    } else {
        unit.into()
    }
}

fn unit_path(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}")
}

pub struct Chatmaild;

impl Component for Chatmaild {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "chatmaild",
            order: 80,
            units: &[
                "doveauth.service",
                "chatmail-metadata.service",
                "lastlogin.service",
                "chatmail-expire.timer",
                "chatmail-fsreport.timer",
            ],
            templates: templates![
                "systemd/dict-service.service.j2",
                "systemd/dict-service.socket.j2",
                "systemd/oneshot.service.j2",
                "systemd/daily.timer.j2",
            ],
            ..Declaration::NONE
        }
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        let mut bin = relay.binary_file(&multi_call_path(), MULTI_CALL)?;
        bin.notify = units_running_it()
            .into_iter()
            .map(Notify::Restart)
            .collect();
        s.file(bin);
        // A relay of the previous versions had a file per program: each becomes a link
        // (the new binary above restarts the units once).
        for (unit, program, ..) in DICT_SERVICES {
            s.add(program_link(program, &[&format!("{unit}.service")]));
        }
        for program in DAILY_JOBS.iter().map(|(job, ..)| job).chain(HELPERS) {
            s.add(program_link(program, &[]));
        }
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.directory(Directory::new("/usr/local/lib/chatmaild"));
        // every service reads the ini only at start
        let mut ini = File::new(INI_PATH, deployed_ini(relay));
        ini.notify = DICT_SERVICES
            .iter()
            .map(|(unit, ..)| Notify::Restart(format!("{unit}.service")))
            .chain(
                FILTERMAIL_UNITS
                    .iter()
                    .map(|(unit, ..)| Notify::Restart(unit.to_string())),
            )
            .collect();
        s.file(ini);
        // the app versions chatmail-metadata announces; read from beside the ini
        s.file(
            File::new(
                "/usr/local/lib/chatmaild/appversions.json",
                ::chatmaild::metadata::appversions::DEFAULT_CONTENT,
            )
            .restarts("chatmail-metadata.service"),
        );
        for (unit, program, description, socket, restart_sec, umask) in DICT_SERVICES {
            let name = format!("{unit}.service");
            let socket_unit = format!("{unit}.socket");
            let text = relay.render(
                "systemd/dict-service.service.j2",
                json!({
                    "description": description, "program": program, "socket": socket,
                    "runtime_dir": dict_runtime_dir(unit), "restart_sec": restart_sec, "umask": umask,
                    "socket_unit": socket_unit,
                }),
            )?;
            s.file(File::new(unit_path(&name), text).restarts(&name));
            // the mode the service's own bind gave the socket under its umask
            let socket_mode = if umask.is_empty() { "0755" } else { "0700" };
            let text = relay.render(
                "systemd/dict-service.socket.j2",
                json!({
                    "description": description, "program": program, "socket": socket,
                    "runtime_dir": dict_runtime_dir(unit), "socket_mode": socket_mode,
                    "service": name,
                }),
            )?;
            s.file(File::new(unit_path(&socket_unit), text).restarts(&socket_unit));
        }
        for (job, description, timer_description, on_calendar, persistent, args) in DAILY_JOBS {
            let text = relay.render(
                "systemd/oneshot.service.j2",
                json!({"description": description, "exec_start": format!("{BIN_DIR}/{job} {INI_PATH}{args}")}),
            )?;
            s.file(File::new(unit_path(&format!("{job}.service")), text));
            let timer = format!("{job}.timer");
            let text = relay.render(
                "systemd/daily.timer.j2",
                json!({"description": timer_description, "on_calendar": on_calendar, "persistent": persistent}),
            )?;
            s.file(File::new(unit_path(&timer), text).restarts(&timer));
        }
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        for (unit, ..) in DICT_SERVICES {
            // enabled, started by the service (see Filtermail::activate)
            s.service(Service {
                enabled: Some(true),
                running: None,
                ..Service::running(&format!("{unit}.socket"))
            });
            s.service(Service::running(&format!("{unit}.service")));
        }
        for (job, ..) in DAILY_JOBS {
            s.service(Service::stopped(&format!("{job}.service")));
            s.service(Service::running(&format!("{job}.timer")));
        }
        Ok(())
    }
}

/// The SMTP filter in its three modes.
pub struct Filtermail;

impl Component for Filtermail {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "filtermail",
            order: 90,
            units: &[
                "filtermail.service",
                "filtermail-incoming.service",
                "filtermail-transport.service",
            ],
            // systemd holds them when the units are socket-activated
            ports: |c| {
                let filtermail: &[&str] = &["filtermail", "systemd"];
                [
                    c.filtermail_smtp_port,
                    c.filtermail_smtp_port_incoming,
                    c.filtermail_http_port_incoming,
                    c.filtermail_lmtp_port_transport,
                ]
                .map(|port| (port, filtermail))
                .to_vec()
            },
            templates: templates![
                "systemd/filtermail.service.j2",
                "systemd/filtermail.socket.j2"
            ],
            ..Declaration::NONE
        }
    }

    fn install(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        let units: Vec<&str> = FILTERMAIL_UNITS.iter().map(|(unit, ..)| *unit).collect();
        s.add(program_link("filtermail", &units));
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        for (unit, mode, description) in FILTERMAIL_UNITS {
            let socket = socket_unit(unit);
            let text = relay.render(
                "systemd/filtermail.service.j2",
                json!({"mode": mode, "description": description}),
            )?;
            s.file(File::new(unit_path(unit), text).restarts(unit));
            let text = relay.render(
                "systemd/filtermail.socket.j2",
                json!({
                    "mode": mode, "description": description, "service": unit,
                    "addresses": filtermail_addresses(relay, mode),
                }),
            )?;
            // Only a changed address needs the socket restarted (which restarts the
            // service too); config and binary changes restart the service alone, and the
            // socket keeps its queue meanwhile.
            s.file(File::new(unit_path(&socket), text).restarts(&socket));
        }
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        for (unit, ..) in FILTERMAIL_UNITS {
            // Enabled for boot, but never started here: on a relay without socket units
            // the running filtermail holds the port, so the socket can only bind once the
            // service stops. Starting (or restarting) the service pulls the socket in
            // first (the socket's RequiredBy=, and sockets start before their service).
            s.service(Service {
                enabled: Some(true),
                running: None,
                ..Service::running(&socket_unit(unit))
            });
            s.service(Service::running(unit));
        }
        Ok(())
    }
}

/// The ini the services read: the operator's file byte for byte, except that a local
/// iroh-relay left out with `--skip` and no other relay named gets `iroh_relay =` (empty:
/// none, as upstream reads it), so chatmail-metadata advertises no relay nothing serves.
pub fn deployed_ini(relay: &Relay) -> Vec<u8> {
    if !(relay.options.skip.contains("iroh-relay") && relay.config.enable_iroh_relay) {
        return relay.ini.clone();
    }
    let text = String::from_utf8_lossy(&relay.ini);
    let line =
        "# chatmail-deploy --skip iroh-relay: no local iroh-relay to advertise\niroh_relay =\n";
    let mut out = String::with_capacity(text.len() + line.len());
    let mut inserted = false;
    for l in text.split_inclusive('\n') {
        out.push_str(l);
        if !inserted && l.trim().eq_ignore_ascii_case("[params]") {
            if !l.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(line);
            inserted = true;
        }
    }
    if !inserted {
        out.push_str("\n[params]\n");
        out.push_str(line);
    }
    out.into_bytes()
}
