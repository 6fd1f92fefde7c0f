//! Third-party binaries the relay runs: pinned release URLs and sha256 per architecture, or
//! a file the operator supplies (hosts without internet).

use operations::{Download, File, Resource};

use super::Relay;

/// One pinned release, declared by the component that runs it.
pub struct Pin {
    /// The name `--binary NAME=PATH` takes.
    pub name: &'static str,
    pub path: &'static str,
    /// Member to extract when the release is a .tar.gz.
    pub member: Option<&'static str>,
    /// (uname -m, url, sha256 of the installed binary)
    pub builds: &'static [(&'static str, &'static str, &'static str)],
}

/// The resource that puts `pin`'s binary in place, restarting `unit` when it changes.
pub fn binary(relay: &Relay, pin: &Pin, unit: &str) -> anyhow::Result<Resource> {
    let name = pin.name;
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
