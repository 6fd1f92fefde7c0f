//! The `filtermail` binary as systemd runs it: `filtermail <ini> <mode>`, on the ports of
//! the ini, re-injecting into a recording sink on loopback.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Filtermail, fixture, free_port, start_sink, submit};

fn write_ini(
    dir: &std::path::Path,
    sink_port: u16,
    out_port: u16,
    in_port: u16,
) -> std::path::PathBuf {
    let ini = dir.join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n\
             filtermail_smtp_port = {out_port}\nfiltermail_smtp_port_incoming = {in_port}\n\
             postfix_reinject_port = {sink_port}\npostfix_reinject_port_incoming = {sink_port}\n",
            dir.join("mail").display()
        ),
    )
    .unwrap();
    ini
}

#[test]
fn binary_outgoing_and_incoming() {
    let dir = tempfile::tempdir().unwrap();
    let (sink_port, delivered) = start_sink();
    let (out_port, in_port) = (free_port(), free_port());
    let ini = write_ini(dir.path(), sink_port, out_port, in_port);
    let rcpt = "bob456789@chat.example.org";
    let user = dir.path().join("mail").join(rcpt);
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("enforceE2EEincoming"), b"").unwrap();

    for (mode, port) in [("outgoing", out_port), ("incoming", in_port)] {
        let _filter = Filtermail::start(&ini, mode, &[("FILTERMAIL_SKIP_DKIM", "1")]);
        let msg = fixture("encrypted.eml");
        assert_eq!(
            submit(port, "alice123@chat.example.org", rcpt, &msg),
            "250 OK",
            "{mode}"
        );
        let (from, data) = delivered.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(from, "MAIL FROM:<alice123@chat.example.org>");
        assert_eq!(data, chatmaild::filtermail::data::stuff(&msg));
        let refused = submit(
            port,
            "alice123@chat.example.org",
            rcpt,
            &fixture("fake-encrypted.eml"),
        );
        assert!(refused.starts_with("523 "), "{mode}: {refused}");
        assert!(delivered.try_recv().is_err());
    }
}

#[test]
fn binary_usage_errors() {
    let out = Command::new(support::program("filtermail"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: filtermail"));
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(dir.path(), 1, free_port(), free_port());
    let out = Command::new(support::program("filtermail"))
        .arg(&ini)
        .arg("sideways")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mode"));
}
