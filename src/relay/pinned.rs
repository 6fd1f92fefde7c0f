//! Third-party binaries the relay runs: pinned release URLs and sha256 per architecture, or
//! a file the operator supplies (hosts without internet).

use operations::{Download, File, Resource};

use super::Relay;

struct Pin {
    name: &'static str,
    path: &'static str,
    /// Member to extract when the release is a .tar.gz.
    member: Option<&'static str>,
    /// (uname -m, url, sha256 of the installed binary)
    builds: &'static [(&'static str, &'static str, &'static str)],
}

const PINS: &[Pin] = &[
    Pin {
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
    },
    Pin {
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
    },
    Pin {
        name: "mtail",
        path: "/usr/local/bin/mtail",
        member: Some("mtail"),
        builds: &[
            (
                "x86_64",
                "https://github.com/google/mtail/releases/download/v3.0.8/mtail_3.0.8_linux_amd64.tar.gz",
                "d55cb601049c5e61eabab29998dbbcea95d480e5448544f9470337ba2eea882e",
            ),
            (
                "aarch64",
                "https://github.com/google/mtail/releases/download/v3.0.8/mtail_3.0.8_linux_arm64.tar.gz",
                "f748db8ad2a1e0b63684d4c8868cf6a373a20f7e6922e5ece601fff0ee00eb1a",
            ),
        ],
    },
];

/// The resource that puts binary `name` in place, restarting `unit` when it changes.
pub fn binary(relay: &Relay, name: &str, unit: &str) -> anyhow::Result<Resource> {
    let pin = PINS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| anyhow::anyhow!("no pinned release for {name}"))?;
    if let Some(local) = relay.options.local_binaries.get(name) {
        let bytes = std::fs::read(local)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", local.display()))?;
        relay.check_program(local, &bytes)?;
        return Ok(File::new(pin.path, bytes).mode(0o755).restarts(unit).into());
    }
    let arch = relay.options.arch.as_str();
    let (_, url, sha256) = pin
        .builds
        .iter()
        .find(|(a, ..)| *a == arch)
        .ok_or_else(|| {
            anyhow::anyhow!("{name} has no release for {arch}: pass --binary {name}=PATH")
        })?;
    Ok(Download {
        path: pin.path.into(),
        url: (*url).into(),
        sha256: (*sha256).into(),
        extract: pin.member.map(String::from),
        local: None,
        owner: "root".into(),
        group: "root".into(),
        mode: 0o755,
        notify: vec![operations::Notify::Restart(unit.into())],
    }
    .into())
}
