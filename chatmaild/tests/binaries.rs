//! Run the service binaries as processes and talk to them over their unix sockets.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Service {
    child: Child,
    socket: PathBuf,
}

/// A failing test must not leave its service running.
impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Service {
    fn start(program: &str, dir: &Path, ini: &Path) -> Service {
        let socket = dir.join(format!("{program}.socket"));
        let child = Command::new(support::program(program))
            .arg(&socket)
            .arg(ini)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "{program} did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Service { child, socket }
    }

    /// Send lines, read `replies` reply lines.
    fn talk(&self, input: &str, replies: usize) -> Vec<String> {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(input.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        (0..replies)
            .map(|_| {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                line
            })
            .collect()
    }

    /// SIGTERM, wait, return (exit code, stderr).
    fn stop(mut self) -> (Option<i32>, String) {
        terminate(self.child.id());
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), err)
    }
}

fn terminate(pid: u32) {
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn write_ini(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let mbox = dir.join("mail");
    let ini = dir.join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\npassdb_path = {}\n\
             max_load_1m = 10000\nmin_available_memory = 0\nmin_free_disk_space = 0\n{extra}",
            mbox.display(),
            dir.join("passdb.sqlite").display()
        ),
    )
    .unwrap();
    (ini, mbox)
}

#[test]
fn doveauth_creates_account_and_logs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, mbox) = write_ini(tmp.path(), "");
    let svc = Service::start("doveauth", tmp.path(), &ini);
    let addr = "abcdefghi@chat.example.org";
    let replies = svc.talk(
        &format!(
            "H3\t2\t0\t\tauth\nLshared/passdb/s3cr3t\\\"pw1\"{addr}\t{addr}\n\
             Lshared/userdb/{addr}\t{addr}\nLshared/userdb/nobody123@chat.example.org\n\
             Lshared/userdb/x@other.example\nI0\t0\tshared/userdb/\n"
        ),
        6,
    );
    assert!(
        replies[0].starts_with("O{\"addr\": \"abcdefghi@chat.example.org\""),
        "{replies:?}"
    );
    assert!(replies[0].contains("{SHA512-CRYPT}$6$"));
    assert_eq!(replies[0], replies[1]);
    assert_eq!(replies[2], "N\n");
    assert_eq!(replies[3], "N\n");
    assert_eq!(replies[4], format!("Oshared/userdb/{addr}\t\n"));
    assert_eq!(replies[5], "\n");
    assert!(mbox.join(addr).join("enforceE2EEincoming").exists());
    let (code, stderr) = svc.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("Created address: {addr}")),
        "{stderr}"
    );
}

#[test]
fn lastlogin_sets_mtime() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, mbox) = write_ini(tmp.path(), "");
    let addr = "abcdefghi@chat.example.org";
    std::fs::create_dir_all(mbox.join(addr)).unwrap();
    std::fs::write(mbox.join(addr).join("password"), "{SHA512-CRYPT}x").unwrap();
    let svc = Service::start("lastlogin", tmp.path(), &ini);
    let replies = svc.talk(
        &format!("B7\t{addr}\nS7\tshared/last-login/{addr}\t1767312345\nC7\nB8\t{addr}\nS8\tother\t1\nC8\n"),
        2,
    );
    assert_eq!(replies, ["O\n", "F\n"]);
    let mtime = std::fs::metadata(mbox.join(addr).join("password"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(mtime, 1_767_312_000);
    let (code, _) = svc.stop();
    assert_eq!(code, Some(0));
}

fn run_to_end(program: &str, args: &[&Path]) -> (Option<i32>, String) {
    let out = Command::new(support::program(program))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_is_fatal_and_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, _) = write_ini(tmp.path(), "max_message_size = huge\n");
    let socket = tmp.path().join("s");
    for program in ["doveauth", "lastlogin"] {
        let (code, err) = run_to_end(program, &[&socket, &ini]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("max_message_size"), "{err}");
    }
}

#[test]
fn usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, err) = run_to_end("doveauth", &[tmp.path()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("usage"), "{err}");
    let (code, err) = run_to_end(
        "lastlogin",
        &[&tmp.path().join("s"), &tmp.path().join("missing.ini")],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("missing.ini"), "{err}");
}

#[test]
fn doveauth_fails_on_unreadable_sqlite_db() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, _) = write_ini(tmp.path(), "");
    std::fs::write(tmp.path().join("passdb.sqlite"), "not a database").unwrap();
    let (code, err) = run_to_end("doveauth", &[&tmp.path().join("s"), &ini]);
    assert_eq!(code, Some(1));
    assert!(err.contains("migration"), "{err}");
    assert!(tmp.path().join("passdb.sqlite").exists());
}

#[test]
fn metadata_requires_mailboxes_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, _) = write_ini(tmp.path(), "");
    let (code, err) = run_to_end("chatmail-metadata", &[&tmp.path().join("s"), &ini]);
    assert_eq!(code, Some(1));
    assert!(err.contains("vmail dir does not exist"), "{err}");
}

#[test]
fn metadata_serves_tokens_and_attributes() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, mbox) = write_ini(tmp.path(), "");
    let addr = "abcdefghi@chat.example.org";
    std::fs::create_dir_all(mbox.join(addr)).unwrap();
    // A stale temp file from a crash is cleaned up at start.
    std::fs::create_dir_all(mbox.join("pending_notifications")).unwrap();
    std::fs::write(mbox.join("pending_notifications").join("x.tmp"), "junk").unwrap();
    std::fs::write(tmp.path().join("appversions.json"), "{\"clients\": []}").unwrap();
    let svc = Service::start("chatmail-metadata", tmp.path(), &ini);
    let server = "shared/g/vendor/vendor.dovecot/pvt/server/vendor/deltachat";
    let replies = svc.talk(
        &format!(
            "B1\t{addr}\nS1\tpriv/g/devicetoken\ttok-AAA\nC1\nLpriv/g/devicetoken\t{addr}\n\
             L{server}/maxsmtprecipients\t{addr}\nL{server}/irohrelay\t{addr}\nL{server}/appversions\t{addr}\n"
        ),
        5,
    );
    assert_eq!(
        replies,
        [
            "O\n",
            "Otok-AAA\n",
            "O1000\n",
            "Ohttps://chat.example.org\n",
            "O{\"clients\":[]}\n"
        ]
    );
    assert!(!mbox.join("pending_notifications").join("x.tmp").exists());
    let (code, stderr) = svc.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn expire_dry_run_then_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, mbox) = write_ini(tmp.path(), "");
    let old = mbox.join("old@chat.example.org");
    std::fs::create_dir_all(old.join("cur")).unwrap();
    let pw = old.join("password");
    std::fs::write(&pw, "x").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(100 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&pw)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let bin = support::program("chatmail-expire");
    let out = Command::new(&bin).arg(&ini).arg("-v").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("Removed 1 out of 1 mailboxes and 0 out of 0 files"),
        "{stdout}"
    );
    assert!(old.exists(), "dry run must not delete");
    let out = Command::new(&bin)
        .arg(&ini)
        .arg("--remove")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!old.exists());
    let out = Command::new(&bin)
        .arg(tmp.path().join("missing.ini"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn quota_expire_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let mb = tmp.path().join("abcdefghi@chat.example.org");
    std::fs::create_dir_all(mb.join("cur")).unwrap();
    let old = chatmaild::user::now_secs() - 3 * 86_400;
    for i in 0..3 {
        std::fs::write(
            mb.join("cur").join(format!("{}.M{i},S=1048576", old + i)),
            "",
        )
        .unwrap();
    }
    std::fs::write(mb.join("maildirsize"), "").unwrap();
    let out = Command::new(support::program("chatmail-quota-expire"))
        .arg("1")
        .arg(&mb)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "quota-expire: removed 2 message(s) from abcdefghi@chat.example.org\n"
    );
    assert!(!mb.join("maildirsize").exists());
}

#[test]
fn fsreport_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, mbox) = write_ini(tmp.path(), "");
    std::fs::create_dir_all(mbox.join("abcdefghi@chat.example.org/cur")).unwrap();
    std::fs::write(mbox.join("abcdefghi@chat.example.org/password"), "x").unwrap();
    let bin = support::program("chatmail-fsreport");
    let out = Command::new(&bin).arg(&ini).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("## Login stats"));
    let prom_dir = tmp.path().join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let legacy = tmp.path().join("metrics");
    let out = Command::new(&bin)
        .arg(&ini)
        .arg("--textfile")
        .arg(&prom_dir)
        .arg("--legacy-metrics")
        .arg(&legacy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let prom = std::fs::read_to_string(prom_dir.join("fsreport.prom")).unwrap();
    assert!(prom.contains("chatmail_accounts{kind=\"all\"} 1\n"));
    assert!(
        std::fs::read_to_string(&legacy)
            .unwrap()
            .contains("\naccounts 1\n")
    );
}

#[test]
fn newemail_cgi() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, _) = write_ini(tmp.path(), "");
    let out = Command::new(support::program("newemail"))
        .arg(&ini)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let body = text
        .strip_prefix("Content-Type: application/json\n\n")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(v["email"].as_str().unwrap().ends_with("@chat.example.org"));
    assert_eq!(v["password"].as_str().unwrap().len(), 12);
}

#[test]
fn two_doveauth_processes_create_each_account_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (ini, _) = write_ini(tmp.path(), "");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let svc_a = Service::start("doveauth", &a, &ini);
    let svc_b = Service::start("doveauth", &b, &ini);
    let input: String = (0..20)
        .map(|i| format!("Lshared/passdb/pw-long-enough\"race{i:05}@chat.example.org\n"))
        .collect();
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| svc_a.talk(&input, 20));
        let hb = s.spawn(|| svc_b.talk(&input, 20));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(ra, rb, "both processes must see the same single creation");
    assert!(ra.iter().all(|r| r.starts_with("O{")));
    let (_, err_a) = svc_a.stop();
    let (_, err_b) = svc_b.stop();
    let created = format!("{err_a}{err_b}")
        .matches("Created address: ")
        .count();
    assert_eq!(created, 20, "{err_a}{err_b}");
}

#[test]
fn multi_call_binary_runs_as_its_name_or_its_first_argument() {
    let chatmaild = support::program("chatmaild");
    let out = Command::new(&chatmaild).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("chatmaild {}\n", env!("CARGO_PKG_VERSION"))
    );
    // the subcommand form gives the same as the symlink: the service's own usage
    for program in support::PROGRAMS {
        let help = |command: &mut Command| {
            let out = command.arg("--help").output().unwrap();
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
        };
        let by_name = help(&mut Command::new(support::program(program)));
        let by_argument = help(Command::new(&chatmaild).arg(program));
        assert_eq!(by_name, by_argument, "{program}");
    }
    let out = Command::new(&chatmaild).arg("doveauth").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "doveauth: usage: doveauth <socket-path> <chatmail.ini>\n"
    );
    let out = Command::new(&chatmaild).arg("dovecot").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("chatmaild: unknown command \"dovecot\""),
        "{err}"
    );
    let out = Command::new(&chatmaild).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chatmail-quota-expire"));
}
