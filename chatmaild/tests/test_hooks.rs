//! The test hooks work in the test build and nowhere else: a shipped build (CI points
//! CHATMAILD_TEST_BIN at .ci/cross-build's output for this file) ignores them. The probe is
//! FILTERMAIL_TEST_DNS_SERVER set to garbage: a build that reads the hook refuses to start,
//! one that ignores it serves (its "entering serving loop" line).

mod support;

use std::process::{Command, Stdio};

use support::free_port;

#[test]
fn only_the_test_build_reads_the_hook_variables() {
    let shipped = std::env::var_os("CHATMAILD_TEST_BIN").is_some_and(|b| !b.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\nfiltermail_smtp_port_incoming = {}\nfiltermail_http_port_incoming = {}\n",
            dir.path().join("mail").display(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let garbage = [(chatmaild::filtermail::DNS_SERVER_ENV, "not-an-address")];
    if shipped {
        // returns once it serves, panics if it exits
        let _serving = support::Filtermail::start(&ini, "incoming", &garbage);
        return;
    }
    let out = Command::new(support::program("filtermail"))
        .arg(&ini)
        .arg("incoming")
        .envs(garbage)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("FILTERMAIL_TEST_DNS_SERVER=\"not-an-address\" is not an ip:port address"),
        "{stderr}"
    );
}
