//! Every file of a Debian 12 relay, compared byte for byte with the files as they were
//! rendered before Debian 13 support came in (`golden/*.txt`): one chatmail.ini serves both
//! releases, and nothing may change for the relays that already run.
//!
//! A deliberate change to a template: `CHATMAIL_GOLDEN_UPDATE=1 cargo test -p
//! chatmail-deploy golden` rewrites the files, and the diff shows what the change does.

use std::path::PathBuf;

use operations::Resource;

/// (golden file, chatmail.ini): the kinds of relay and the options that switch templates.
const RELAYS: &[(&str, &str)] = &[
    (
        "acme",
        "[params]\nmail_domain = chat.example.org\nacme_email = admin@example.org\n",
    ),
    ("self-signed", "[params]\nmail_domain = _relay-a.test\n"),
    (
        "ipv4",
        "[params]\nmail_domain = 203.0.113.7\ndisable_ipv6 = true\n",
    ),
    (
        "external-cert-mtail-compress",
        "[params]\nmail_domain = chat.example.org\ntls_external_cert_and_key = /etc/my/cert.pem /etc/my/key.pem\nmtail_address = 127.0.0.1\nimap_compress = true\nprivacy_mail = privacy@example.org\n",
    ),
    (
        "rawlog",
        "[params]\nmail_domain = _relay-a.test\nimap_rawlog = true\n",
    ),
];

/// Every file outside the web root (the pages come from www/, not from the templates), with
/// its owner and mode.
fn rendered(ini: &str) -> String {
    let state = super::state_with(ini, false);
    let mut out = String::new();
    for r in &state.resources {
        if let Resource::File(f) = r
            && !f.path.starts_with("/var/www/")
        {
            out.push_str(&format!(
                "=== {} {}:{} {:o}\n{}\n",
                f.path,
                f.owner,
                f.group,
                f.mode,
                String::from_utf8_lossy(&f.content)
            ));
        }
    }
    out
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/relay/tests/golden")
        .join(format!("{name}.txt"))
}

#[test]
fn debian_12_relays_render_as_before() {
    let update = std::env::var_os("CHATMAIL_GOLDEN_UPDATE").is_some();
    let mut differ = Vec::new();
    for (name, ini) in RELAYS {
        let now = rendered(ini);
        let path = golden(name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &now).unwrap();
            continue;
        }
        let before =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if before != now {
            differ.push(*name);
        }
    }
    assert!(
        differ.is_empty(),
        "rendered files differ from src/relay/tests/golden for: {differ:?}"
    );
}
