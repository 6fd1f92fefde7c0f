//! The relay binaries this chatmail-deploy carries (built with CHATMAIL_EMBED_DIR, see
//! build.rs): one set per host architecture, so that an operator's download deploys x86_64
//! and aarch64 hosts without a Rust toolchain and without the host fetching our binaries.

use std::io::Read;

/// One embedded binary: (host architecture as `uname -m` names it, name, sha256 of the
/// binary as `sha256sum` prints it, its gzip).
type Entry = (&'static str, &'static str, &'static str, &'static [u8]);

static TABLE: &[Entry] = include!(concat!(env!("OUT_DIR"), "/embedded_relay_binaries.rs"));

/// An embedded binary, unpacked (for the checks before upload and the plan's hash) and
/// as stored, so that the upload sends the stored gzip stream instead of packing it again.
#[derive(Debug)]
pub struct Embedded {
    pub bytes: Vec<u8>,
    pub gzip: &'static [u8],
}

/// The embedded binary `name` for `arch`: `None` when this build carries no relay binaries,
/// an error naming what is there when it carries none for `arch` or none named `name`.
pub fn binary(arch: &str, name: &str) -> Option<Result<Embedded, String>> {
    lookup(TABLE, arch, name)
}

fn lookup(table: &[Entry], arch: &str, name: &str) -> Option<Result<Embedded, String>> {
    if table.is_empty() {
        return None;
    }
    let arches = arches(table);
    if !arches.contains(&arch) {
        return Some(Err(format!(
            "this chatmail-deploy carries relay binaries for {} only, not for the host's {arch}: pass --bin-dir with binaries built for {arch}",
            arches.join(" and ")
        )));
    }
    let Some(&(_, _, _, gzip)) = table.iter().find(|e| e.0 == arch && e.1 == name) else {
        return Some(Err(format!(
            "this chatmail-deploy carries no relay binary {name} for {arch} (it carries another relay version's set): pass --bin-dir"
        )));
    };
    let mut bytes = Vec::new();
    Some(
        flate2::read::GzDecoder::new(gzip)
            .read_to_end(&mut bytes)
            .map(|_| Embedded { bytes, gzip })
            .map_err(|err| format!("embedded relay binary {arch}/{name} is damaged: {err}")),
    )
}

/// The architectures with an embedded set, in build order.
fn arches(table: &[Entry]) -> Vec<&'static str> {
    let mut arches: Vec<&str> = table.iter().map(|e| e.0).collect();
    arches.dedup();
    arches
}

/// What `--version` tells about the embedded set: each binary with its arch and the start
/// of its sha256 (compare with `sha256sum` of the deployed file), or that there is none.
pub fn summary() -> String {
    if TABLE.is_empty() {
        return "relay binaries: none embedded (taken from --bin-dir or next to this program)"
            .into();
    }
    let listed: Vec<String> = TABLE
        .iter()
        .map(|(arch, name, sha, _)| format!("{arch}/{name} sha256 {}", &sha[..16]))
        .collect();
    format!("relay binaries embedded: {}", listed.join(", "))
}

/// The architecture to plan with before the host's facts are known: this program's own if
/// a set for it is embedded (or none is), else the first embedded one. The host's own arch
/// decides once its facts are in.
pub fn planning_arch() -> &'static str {
    let own = std::env::consts::ARCH;
    match arches(TABLE).first() {
        Some(first) if !arches(TABLE).contains(&own) => first,
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> &'static [u8] {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap().leak()
    }

    #[test]
    fn a_build_without_embedded_binaries_leaves_the_choice_to_the_caller() {
        assert!(lookup(&[], "x86_64", "chatmaild").is_none());
    }

    #[test]
    fn the_binary_for_the_hosts_arch_comes_back_unpacked() {
        let table = [
            ("x86_64", "chatmaild", "00", gzip(b"x86 build")),
            ("aarch64", "chatmaild", "00", gzip(b"arm build")),
        ];
        let arm = lookup(&table, "aarch64", "chatmaild").unwrap().unwrap();
        assert_eq!(arm.bytes, b"arm build");
        assert_eq!(arm.gzip, table[1].3, "the stored stream, for the upload");
        let x86 = lookup(&table, "x86_64", "chatmaild").unwrap().unwrap();
        assert_eq!(x86.bytes, b"x86 build");
    }

    #[test]
    fn a_host_arch_without_a_set_is_one_line_naming_what_is_there() {
        let table = [("x86_64", "chatmaild", "00", gzip(b"x86 build"))];
        let err = lookup(&table, "riscv64", "chatmaild").unwrap().unwrap_err();
        assert_eq!(
            err,
            "this chatmail-deploy carries relay binaries for x86_64 only, not for the host's riscv64: pass --bin-dir with binaries built for riscv64"
        );
        let err = lookup(&table, "x86_64", "filtermail").unwrap().unwrap_err();
        assert!(
            err.starts_with("this chatmail-deploy carries no relay binary filtermail for x86_64"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_entry_is_an_error_not_a_panic() {
        let table = [("x86_64", "chatmaild", "00", &b"not gzip"[..])];
        let err = lookup(&table, "x86_64", "chatmaild").unwrap().unwrap_err();
        assert!(
            err.starts_with("embedded relay binary x86_64/chatmaild is damaged: "),
            "{err}"
        );
    }
}
