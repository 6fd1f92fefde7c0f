//! Golden files: every file the relay renders, for each kind of relay, compared with the copy
//! in `tests/golden/<kind>/` (files deployed verbatim from `templates/` are named there, not
//! copied), so a template change shows up as a readable diff in the failing
//! test and in review. `CHATMAIL_BLESS=1 cargo test --lib golden` writes the new copies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use operations::Resource;
use similar::TextDiff;

use super::state_on;
use crate::relay::context::BIN_DIR;
use crate::relay::release::Release;

/// One chatmail.ini per TLS mode (and the IP-literal relay, which has no DKIM), on Debian 12;
/// the Debian 13 relays after them.
const KINDS: &[(&str, &str)] = &[
    (
        "acme",
        "[params]\nmail_domain = chat.example.org\nacme_email = admin@example.org\n",
    ),
    ("self-signed", "[params]\nmail_domain = _relay-a.test\n"),
    (
        "ip-literal",
        "[params]\nmail_domain = 203.0.113.7\ndisable_ipv6 = true\n",
    ),
    (
        "external",
        "[params]\nmail_domain = chat.example.org\ntls_external_cert_and_key = /etc/my/cert.pem /etc/my/key.pem\nmtail_address = 127.0.0.1\nimap_compress = true\nprivacy_mail = privacy@example.org\n",
    ),
    (
        "rawlog",
        "[params]\nmail_domain = _relay-a.test\nimap_rawlog = true\n",
    ),
    (
        "trixie-acme",
        "[params]\nmail_domain = chat.example.org\nacme_email = admin@example.org\n",
    ),
    (
        "trixie-external",
        "[params]\nmail_domain = chat.example.org\ntls_external_cert_and_key = /etc/my/cert.pem /etc/my/key.pem\nmtail_address = 127.0.0.1\nimap_compress = true\nprivacy_mail = privacy@example.org\n",
    ),
];

fn release_of(kind: &str) -> Release {
    if kind.starts_with("trixie-") {
        Release::Trixie
    } else {
        Release::Bookworm
    }
}

/// What a relay kind renders: text files by path, and one line per resource.
struct Rendered {
    files: BTreeMap<String, String>,
    resources: String,
}

/// content -> path under templates/ of every template deployed as it is (no `.j2`): such a
/// file is its own golden copy, and a second copy per relay kind would only repeat it.
fn verbatim_templates() -> BTreeMap<Vec<u8>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_none_or(|e| e != "j2") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(std::fs::read(&path).unwrap(), rel);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

fn render(ini: &str, release: Release) -> Rendered {
    let state = state_on(ini, false, &[], release);
    let verbatim = verbatim_templates();
    let mut files = BTreeMap::new();
    let mut resources = String::new();
    for r in &state.resources {
        match r {
            Resource::File(f) => {
                // binaries (the test's stand-ins) and the web pages (built from www/, which
                // tests/pages checks) are summarized; every config is kept whole
                let text = std::str::from_utf8(&f.content)
                    .ok()
                    .filter(|_| !f.path.starts_with(BIN_DIR) && !f.path.starts_with("/var/www/"));
                let what = match (text, verbatim.get(&f.content)) {
                    (Some(_), Some(template)) => format!("= templates/{template}"),
                    (Some(text), None) => {
                        files.insert(f.path.clone(), text.to_string());
                        "text".to_string()
                    }
                    (None, _) => format!("{} bytes", f.content.len()),
                };
                writeln!(
                    resources,
                    "File {} {}:{} {:o} {what} notify={:?}",
                    f.path, f.owner, f.group, f.mode, f.notify
                )
                .unwrap();
            }
            // scripts as they run, one line each, so a changed command diffs line by line
            Resource::Command(c) => {
                writeln!(
                    resources,
                    "Command {:?} guard={:?} notify={:?}",
                    c.description, c.guard, c.notify
                )
                .unwrap();
                for line in c.script.lines() {
                    writeln!(resources, "    | {line}").unwrap();
                }
            }
            other => writeln!(resources, "{other:?}").unwrap(),
        }
    }
    Rendered { files, resources }
}

fn golden_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(kind)
}

/// path (as deployed) -> content of the stored copies.
fn read_golden(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                out.insert(format!("/{rel}"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&dir.join("files"), &dir.join("files"), &mut out);
    out
}

fn write_golden(dir: &Path, rendered: &Rendered) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    for (path, text) in &rendered.files {
        let file = dir.join("files").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    std::fs::write(dir.join("resources.txt"), &rendered.resources).unwrap();
}

fn diff(name: &str, old: &str, new: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("golden {name}"), &format!("rendered {name}"))
        .to_string()
}

/// Every difference between the stored copies and what renders now, as unified diffs.
fn differences(dir: &Path, rendered: &Rendered) -> String {
    let golden = read_golden(dir);
    let mut out = String::new();
    for (path, text) in &rendered.files {
        let old = golden.get(path).map(String::as_str).unwrap_or("");
        if golden.get(path) != Some(text) {
            out += &diff(path, old, text);
        }
    }
    for (path, old) in &golden {
        if !rendered.files.contains_key(path) {
            out += &diff(path, old, "");
        }
    }
    let resources = std::fs::read_to_string(dir.join("resources.txt")).unwrap_or_default();
    if resources != rendered.resources {
        out += &diff("resources.txt", &resources, &rendered.resources);
    }
    out
}

#[test]
fn every_rendered_config_matches_its_golden_copy() {
    let bless = std::env::var_os("CHATMAIL_BLESS").is_some();
    let mut failures = String::new();
    for (kind, ini) in KINDS {
        let rendered = render(ini, release_of(kind));
        let dir = golden_dir(kind);
        if bless {
            write_golden(&dir, &rendered);
            continue;
        }
        let d = differences(&dir, &rendered);
        if !d.is_empty() {
            let _ = writeln!(failures, "== relay kind {kind} ({})\n{d}", dir.display());
        }
    }
    assert!(
        failures.is_empty(),
        "rendered configs differ from tests/golden (accept with CHATMAIL_BLESS=1 cargo test --lib golden):\n{failures}"
    );
}

#[test]
fn a_changed_template_shows_as_a_diff_of_that_file() {
    let (kind, ini) = KINDS[1];
    let mut rendered = render(ini, Release::Bookworm);
    let main_cf = rendered.files.get_mut("/etc/postfix/main.cf").unwrap();
    *main_cf = main_cf.replace("smtpd_tls_security_level", "smtpd_tls_securityy_level");
    let d = differences(&golden_dir(kind), &rendered);
    assert!(
        d.starts_with("--- golden /etc/postfix/main.cf\n+++ rendered /etc/postfix/main.cf\n"),
        "{d}"
    );
    assert!(d.contains("\n-smtpd_tls_security_level"), "{d}");
    assert!(d.contains("\n+smtpd_tls_securityy_level"), "{d}");
    assert_eq!(d.matches("--- golden").count(), 1, "{d}");
}
