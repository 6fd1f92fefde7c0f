//! Can this program run on the host? Checked before a binary is uploaded: a Mach-O file
//! from a Mac, an x86_64 build for an arm64 server or a build against a newer glibc would
//! otherwise be installed, crash-loop under systemd, and the run would say "changed".

use facts::Query;

/// What the host offers programs: its machine and, when it has glibc, its version and loaders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAbi {
    /// `uname -m`, e.g. `x86_64` or `aarch64`.
    pub arch: String,
    /// glibc's version, e.g. `(2, 36)`; `None` when unknown.
    pub glibc: Option<(u32, u32)>,
    /// Program loaders present on the host (paths).
    pub loaders: Vec<String>,
}

const ABI_FACT: &str = "host abi: glibc and loaders";

/// Adds what [`HostAbi::from_facts`] needs.
pub fn extend_query(q: &mut Query) {
    q.outputs.insert(
        ABI_FACT.into(),
        "getconf GNU_LIBC_VERSION; ls -1 /lib64/ld-linux-* /lib/ld-linux-* /lib/ld-musl-* 2>/dev/null"
            .into(),
    );
}

impl HostAbi {
    pub fn from_facts(facts: &facts::HostFacts) -> HostAbi {
        let out = facts
            .outputs
            .get(ABI_FACT)
            .map(String::as_str)
            .unwrap_or("");
        let glibc = out
            .lines()
            .find_map(|l| l.strip_prefix("glibc "))
            .and_then(parse_version);
        HostAbi {
            arch: facts.arch.clone(),
            glibc,
            loaders: out
                .lines()
                .filter(|l| l.starts_with('/'))
                .map(str::to_string)
                .collect(),
        }
    }

    fn describe(&self) -> String {
        match self.glibc {
            Some((major, minor)) => format!("{}, glibc {major}.{minor}", self.arch),
            None => self.arch.clone(),
        }
    }
}

/// ELF `e_machine` for the architectures relays run on.
fn machine_name(e_machine: u16) -> &'static str {
    match e_machine {
        62 => "x86_64",
        183 => "aarch64",
        3 => "i386",
        40 => "arm",
        _ => "another machine",
    }
}

/// `Ok` when `bytes` (the file at `path`) can run on `host`, else why not, in one line.
pub fn check(path: &str, bytes: &[u8], host: &HostAbi) -> Result<(), String> {
    let refuse = |why: String| {
        Err(format!(
            "{path} cannot run on the host ({}): {why}",
            host.describe()
        ))
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        let why = match bytes.get(..4) {
            Some(
                [0xcf, 0xfa, 0xed, 0xfe] | [0xfe, 0xed, 0xfa, 0xcf] | [0xca, 0xfe, 0xba, 0xbe],
            ) => "it is a macOS (Mach-O) program; build the relay binaries for Linux".to_string(),
            Some([b'M', b'Z', ..]) => "it is a Windows program".to_string(),
            Some([b'#', b'!', ..]) => return Ok(()),
            _ => "it is not an ELF program".to_string(),
        };
        return refuse(why);
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return refuse("it is not a 64-bit little-endian program".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    let machine = machine_name(u16_at(0x12));
    if machine != host.arch {
        return refuse(format!("it is built for {machine}"));
    }
    let Some(interp) = interpreter(bytes, u16_at, u64_at) else {
        return Ok(()); // static: nothing else to match
    };
    if !host.loaders.is_empty() && !host.loaders.contains(&interp) {
        return refuse(format!(
            "it needs the program loader {interp}, which the host does not have (build it static, e.g. for {}-unknown-linux-musl)",
            host.arch
        ));
    }
    if let (Some(needed), Some(have)) = (glibc_needed(bytes), host.glibc)
        && needed > have
    {
        return refuse(format!(
            "it needs glibc {}.{} (built on a newer system; build it static, e.g. for {}-unknown-linux-musl)",
            needed.0, needed.1, host.arch
        ));
    }
    Ok(())
}

/// The PT_INTERP path of a dynamically linked program.
fn interpreter(
    bytes: &[u8],
    u16_at: impl Fn(usize) -> u16,
    u64_at: impl Fn(usize) -> Option<usize>,
) -> Option<String> {
    const PT_INTERP: u32 = 3;
    let phoff = u64_at(0x20)?;
    let (size, count) = (u16_at(0x36) as usize, u16_at(0x38) as usize);
    (0..count).find_map(|i| {
        let ph = phoff + i * size;
        let kind = u32::from_le_bytes(bytes.get(ph..ph + 4)?.try_into().ok()?);
        if kind != PT_INTERP {
            return None;
        }
        let (offset, len) = (u64_at(ph + 8)?, u64_at(ph + 32)?);
        let raw = bytes.get(offset..offset + len)?;
        Some(
            String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string(),
        )
    })
}

/// The highest `GLIBC_x.y` symbol version the program names.
fn glibc_needed(bytes: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_";
    bytes
        .windows(TAG.len())
        .enumerate()
        .filter(|(_, w)| *w == TAG)
        .filter_map(|(i, _)| {
            let rest = &bytes[i + TAG.len()..];
            let end = rest
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                .unwrap_or(rest.len());
            parse_version(std::str::from_utf8(&rest[..end]).ok()?)
        })
        .max()
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(arch: &str, glibc: (u32, u32)) -> HostAbi {
        HostAbi {
            arch: arch.into(),
            glibc: Some(glibc),
            loaders: vec!["/lib64/ld-linux-x86-64.so.2".into()],
        }
    }

    /// This test program itself: an x86_64 (or aarch64) glibc program of this machine.
    fn this_program() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn this_machines_programs_run_here_and_not_on_another_arch() {
        let me = this_program();
        let arch = std::env::consts::ARCH;
        let mut here = host(arch, (2, 36));
        here.loaders.push("/lib/ld-linux-aarch64.so.1".into());
        assert_eq!(check("/x/filtermail", &me, &here), Ok(()));
        let other = if arch == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        assert_eq!(
            check("/x/filtermail", &me, &host(other, (2, 36))),
            Err(format!(
                "/x/filtermail cannot run on the host ({other}, glibc 2.36): it is built for {arch}"
            ))
        );
    }

    #[test]
    fn a_newer_glibc_or_a_missing_loader_is_refused() {
        let me = this_program();
        let arch = std::env::consts::ARCH;
        let mut old = host(arch, (2, 2));
        old.loaders.clear();
        let err = check("/x/doveauth", &me, &old).unwrap_err();
        assert!(err.contains(": it needs glibc 2."), "{err}");
        let mut no_loader = host(arch, (2, 99));
        no_loader.loaders = vec!["/lib/ld-musl-x86_64.so.1".into()];
        let err = check("/x/doveauth", &me, &no_loader).unwrap_err();
        assert!(err.contains("it needs the program loader /lib"), "{err}");
    }

    #[test]
    fn mach_o_windows_and_text_are_named() {
        let h = host("x86_64", (2, 36));
        let mach_o = [0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1];
        assert_eq!(
            check("bin/filtermail", &mach_o, &h),
            Err("bin/filtermail cannot run on the host (x86_64, glibc 2.36): it is a macOS (Mach-O) program; build the relay binaries for Linux".into())
        );
        assert!(
            check("a.exe", b"MZ\x90\0", &h)
                .unwrap_err()
                .ends_with("it is a Windows program")
        );
        assert!(
            check("x", b"hello", &h)
                .unwrap_err()
                .ends_with("it is not an ELF program")
        );
        assert_eq!(check("newemail", b"#!/bin/sh\necho\n", &h), Ok(()));
    }

    /// A static program's ELF header alone: no program loader (PT_INTERP), nothing of glibc.
    fn static_elf(e_machine: u16) -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x12..0x14].copy_from_slice(&e_machine.to_le_bytes());
        elf
    }

    /// A host without glibc or any loader (e.g. Alpine has only musl's, Debian's minimal
    /// images may have none we know).
    fn bare(arch: &str) -> HostAbi {
        HostAbi {
            arch: arch.into(),
            ..HostAbi::default()
        }
    }

    #[test]
    fn a_static_program_needs_only_the_right_machine() {
        for (arch, e_machine, other) in [("x86_64", 62, "aarch64"), ("aarch64", 183, "x86_64")] {
            let elf = static_elf(e_machine);
            assert_eq!(check("chatmaild", &elf, &host(arch, (2, 2))), Ok(()));
            assert_eq!(check("chatmaild", &elf, &bare(arch)), Ok(()));
            assert_eq!(
                check("chatmaild", &elf, &bare(other)),
                Err(format!(
                    "chatmaild cannot run on the host ({other}): it is built for {arch}"
                ))
            );
        }
    }

    /// The real static builds of `.ci/cross-build`, when CHATMAILD_STATIC_BINS names its
    /// output (CI sets it): each passes on its own arch whatever the libc, and is refused on
    /// the other.
    #[test]
    fn the_cross_built_relay_binaries_pass_on_their_arch_only() {
        let Some(dir) = std::env::var_os("CHATMAILD_STATIC_BINS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        for (arch, other) in [("x86_64", "aarch64"), ("aarch64", "x86_64")] {
            let path = dir.join(arch).join("chatmaild");
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.display().to_string();
            assert_eq!(check(&name, &bytes, &bare(arch)), Ok(()), "{name}");
            assert_eq!(check(&name, &bytes, &host(arch, (2, 2))), Ok(()), "{name}");
            let err = check(&name, &bytes, &host(other, (2, 36))).unwrap_err();
            assert!(err.ends_with(&format!("it is built for {arch}")), "{err}");
        }
    }

    #[test]
    fn host_abi_comes_from_the_facts() {
        let mut facts = facts::HostFacts {
            arch: "aarch64".into(),
            ..Default::default()
        };
        facts.outputs.insert(
            ABI_FACT.into(),
            "glibc 2.36\n/lib/ld-linux-aarch64.so.1\n".into(),
        );
        assert_eq!(
            HostAbi::from_facts(&facts),
            HostAbi {
                arch: "aarch64".into(),
                glibc: Some((2, 36)),
                loaders: vec!["/lib/ld-linux-aarch64.so.1".into()],
            }
        );
    }
}
