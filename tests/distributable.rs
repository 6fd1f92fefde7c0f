//! What an operator downloads: the static linux-x86_64 chatmail-deploy built by .ci/dist,
//! carrying the relay binary for both architectures, run from a directory with nothing
//! beside it, deploys a relay from the binary it carries for the host; the relay passes
//! `test --insecure` and a second run changes nothing.
//!
//!     CHATMAIL_TESTHOSTS=1 CHATMAIL_DIST_TESTS=1 cargo test --test distributable
//!     CHATMAIL_TESTHOSTS=1 CHATMAIL_DIST_ARTIFACT=dist/chatmail-deploy-linux-x86_64 cargo test --test distributable
//!
//! The linux-aarch64 artifact runs here under qemu-aarch64-static (Debian's qemu-user-static)
//! and deploys the same x86_64 test host, with the x86_64 relay binary it carries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestHost, dns_set, enabled, run};

const DOMAIN: &str = "_ship-dist.test";

/// The artifact: CHATMAIL_DIST_ARTIFACT if set (an already built one), else with
/// CHATMAIL_DIST_TESTS=1 built here by .ci/dist; `None`: the test does not run (a cold
/// .ci/dist cross-builds four release programs, far too long for every test run).
fn artifact() -> Option<PathBuf> {
    if let Some(given) = std::env::var_os("CHATMAIL_DIST_ARTIFACT") {
        return Some(PathBuf::from(given));
    }
    if std::env::var_os("CHATMAIL_DIST_TESTS").is_none_or(|v| v != "1") {
        eprintln!("skipped: set CHATMAIL_DIST_ARTIFACT=FILE or CHATMAIL_DIST_TESTS=1");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join(".ci/dist"))
        .status()
        .expect("run .ci/dist");
    assert!(status.success(), ".ci/dist failed");
    Some(root.join("dist/chatmail-deploy-linux-x86_64"))
}

#[test]
fn the_distributable_deploys_a_relay_from_the_binaries_it_carries() {
    if !enabled("distributable") {
        return;
    }
    let Some(built) = artifact() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("ship-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (tool, artifact) = installed(&built, &dir);

    // static, and it says which relay binaries it carries (.ci/dist checks that both
    // architectures' sets are in)
    let file = Command::new("file").arg(&artifact).output();
    if let Ok(file) = file {
        let text = String::from_utf8_lossy(&file.stdout);
        assert!(
            text.contains("statically linked") || text.contains("static-pie"),
            "{text}"
        );
    }
    // nothing in it points into the checkout it was built from (such a path, like the old
    // default www folder, works on the build machine and nowhere else)
    let checkout = env!("CARGO_MANIFEST_DIR").as_bytes();
    let bytes = std::fs::read(&artifact).unwrap();
    assert!(
        !bytes.windows(checkout.len()).any(|w| w == checkout),
        "{} names the checkout {}",
        artifact.display(),
        env!("CARGO_MANIFEST_DIR")
    );

    let version = run(&tool, &["--version"], &[]);
    assert_eq!(version.code, 0, "{}", version.stderr);
    let carried = embedded(&version.stdout);
    for arch in ["x86_64", "aarch64"] {
        assert!(
            carried.iter().any(|(a, _, _)| a == arch),
            "no {arch} relay binary: {}",
            version.stdout
        );
    }

    let host = TestHost::up("shp-dist");
    dns_set(&[
        &format!("{DOMAIN}. 60 IN A {}", host.addr),
        &format!("{DOMAIN}. 60 IN MX 10 {DOMAIN}."),
    ]);
    let ini = dir.join("chatmail.ini");
    common::test_ini(&tool, &ini, DOMAIN);
    let args = common::relay::run_args(&host, &ini);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = run(&tool, &args, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // the relay binary went as the gzip stream the artifact stores (about 4 MB), not as
    // 8.6 MB of ELF: the whole fresh deploy stays within issue 12's 6 MB
    let uploaded = common::uploaded_bytes(&first.stderr);
    assert!(
        uploaded > 0 && uploaded <= 6_000_000,
        "{uploaded} bytes uploaded"
    );

    // the host runs exactly the x86_64 binaries the artifact carries (wherever each goes)
    let on_host = host.sh("sha256sum /usr/local/bin/* /usr/lib/cgi-bin/* 2>/dev/null || true");
    for (_, name, sha) in carried.iter().filter(|(arch, _, _)| arch == "x86_64") {
        assert!(
            on_host.lines().any(|l| l.starts_with(sha.as_str())),
            "{name} ({sha}) is not on the host:\n{on_host}"
        );
    }

    // the web pages it carries, built for this domain: the default www_folder is the
    // built-in pages, not a path on the machine the artifact was built on
    assert!(
        !first.stderr.contains("web page") && !first.stdout.contains("web page"),
        "{}{}",
        first.stdout,
        first.stderr
    );
    let index = host.sh("cat /var/www/html/index.html");
    assert!(index.contains(DOMAIN), "{index}");

    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/with-test-dns"))
        .arg(&tool)
        .args(["test", "--insecure", "--config", ini.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("test: ") && last.contains(" passed"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");

    let again = run(&tool, &args, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.last_line().starts_with("summary: 0 changed"),
        "{}",
        again.stdout
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The artifact copied into `dir`, and the program to run: the artifact itself, or, for an
/// artifact built for another machine (the linux-aarch64 one on this x86_64 machine), a
/// `chatmail-deploy` script that runs it under Debian's qemu-user-static, so an operator's
/// arm64 laptop is stood in for by the emulator (with the artifact in a directory of its own,
/// nothing but the script beside the program).
fn installed(built: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let tool = dir.join("chatmail-deploy");
    let head = std::fs::read(built).expect("read the artifact");
    let arch = match head.get(18..20) {
        Some([0x3e, 0]) => "x86_64",
        Some([0xb7, 0]) => "aarch64",
        _ => panic!("{}: not an x86_64 or aarch64 ELF file", built.display()),
    };
    if arch == std::env::consts::ARCH {
        std::fs::copy(built, &tool).unwrap();
        return (tool.clone(), tool);
    }
    let emulator = format!("qemu-{arch}-static");
    let real = dir.join("bin").join(built.file_name().unwrap());
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::copy(built, &real).unwrap();
    std::fs::write(
        &tool,
        format!("#!/bin/sh\nexec {emulator} {} \"$@\"\n", real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    (tool, real)
}

/// (arch, name, sha256 prefix) from `--version`'s "relay binaries embedded: x86_64/name
/// sha256 0123..., ...".
fn embedded(version: &str) -> Vec<(String, String, String)> {
    version
        .lines()
        .filter_map(|l| l.strip_prefix("relay binaries embedded: "))
        .flat_map(|l| l.split(", "))
        .filter_map(|item| {
            let (path, sha) = item.split_once(" sha256 ")?;
            let (arch, name) = path.split_once('/')?;
            Some((arch.to_string(), name.to_string(), sha.to_string()))
        })
        .collect()
}
