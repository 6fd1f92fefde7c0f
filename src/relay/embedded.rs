//! The relay binaries this chatmail-deploy carries (built with CHATMAIL_EMBED_DIR, see
//! build.rs): one set per host architecture, so that an operator's download deploys x86_64
//! and aarch64 hosts without a Rust toolchain and without the host fetching our binaries.

use std::io::Read;

/// One embedded binary.
struct Embedded {
    /// The host architecture it is built for (`uname -m`).
    arch: &'static str,
    name: &'static str,
    /// sha256 of the binary itself, as `sha256sum` prints it.
    sha256: &'static str,
    gzip: &'static [u8],
}

const fn entry(
    (arch, name, sha256, gzip): (&'static str, &'static str, &'static str, &'static [u8]),
) -> Embedded {
    Embedded {
        arch,
        name,
        sha256,
        gzip,
    }
}

static TABLE: &[(&str, &str, &str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/embedded_relay_binaries.rs"));

fn all() -> impl Iterator<Item = Embedded> {
    TABLE.iter().copied().map(entry)
}

/// Whether this build carries relay binaries at all.
pub fn any() -> bool {
    !TABLE.is_empty()
}

/// The architectures with an embedded set, in build order.
pub fn arches() -> Vec<&'static str> {
    let mut arches: Vec<&str> = all().map(|e| e.arch).collect();
    arches.dedup();
    arches
}

/// The embedded binary `name` for `arch`: `None` when this build carries no relay binaries,
/// an error naming what is there when it carries none for `arch` or none named `name`.
pub fn binary(arch: &str, name: &str) -> Option<Result<Vec<u8>, String>> {
    if !any() {
        return None;
    }
    let arches = arches();
    if !arches.contains(&arch) {
        return Some(Err(format!(
            "this chatmail-deploy carries relay binaries for {} only, not for the host's {arch}: pass --bin-dir with binaries built for {arch}",
            arches.join(" and ")
        )));
    }
    let Some(e) = all().find(|e| e.arch == arch && e.name == name) else {
        return Some(Err(format!(
            "this chatmail-deploy carries no relay binary {name} for {arch}: it was built with an older relay binary set; pass --bin-dir"
        )));
    };
    let mut bytes = Vec::new();
    Some(
        flate2::read::GzDecoder::new(e.gzip)
            .read_to_end(&mut bytes)
            .map(|_| bytes)
            .map_err(|err| format!("embedded relay binary {arch}/{name} is damaged: {err}")),
    )
}

/// What `--version` tells about the embedded set: each binary with its arch and the start
/// of its sha256 (compare with the release's SHA256SUMS), or that there is none.
pub fn summary() -> String {
    if !any() {
        return "relay binaries: none embedded (taken from --bin-dir or next to this program)"
            .into();
    }
    let listed: Vec<String> = all()
        .map(|e| format!("{}/{} sha256 {}", e.arch, e.name, &e.sha256[..16]))
        .collect();
    format!("relay binaries embedded: {}", listed.join(", "))
}

/// The architecture to plan with before the host's facts are known: this program's own if
/// a set for it is embedded (or none is), else the first embedded one. The host's own arch
/// decides once its facts are in.
pub fn planning_arch() -> &'static str {
    let own = std::env::consts::ARCH;
    match arches().first() {
        Some(first) if !arches().contains(&own) => first,
        _ => own,
    }
}
