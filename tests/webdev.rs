//! `webdev` serves the built pages on localhost and rebuilds when a source changes.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pages_are_served_and_rebuilt_on_change() {
    let dir = std::env::temp_dir().join(format!("webdev-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("www"),
        &dir.join("www"),
    );
    let ini = dir.join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nwww_folder = {}\n",
            dir.join("www").display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatmail-deploy"))
        .args([
            "webdev",
            "--config",
            ini.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--out",
        ])
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let (status, home) = get(port, "/");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(
        home.contains("DCACCOUNT:https://chat.example.org/new"),
        "{home}"
    );
    assert!(get(port, "/main.css").0.ends_with("200 OK"));
    assert!(
        get(port, "/../chatmail.ini").0.ends_with("404 Not Found"),
        "nothing outside the build"
    );

    let index = dir.join("www/src/index.md");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, format!("{text}\nfreshly-edited-marker\n")).unwrap();
    wait_until("the rebuild", || {
        get(port, "/index.html").1.contains("freshly-edited-marker")
    });

    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
