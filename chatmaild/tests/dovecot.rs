//! End-to-end tests against a real Dovecot (Debian packages dovecot-imapd, dovecot-lmtpd).
//!
//! Skipped unless `CHATMAIL_DOVECOT_TESTS` is set, `/usr/sbin/dovecot` exists, we are root
//! and a `vmail` system user exists (the userdb records name it as the mail user). Dovecot
//! runs in the foreground from a private base_dir and listens on loopback ports only.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::free_port;

const DOMAIN: &str = "chat.example.org";

fn skip_reason() -> Option<String> {
    if std::env::var_os("CHATMAIL_DOVECOT_TESTS").is_none() {
        return Some("CHATMAIL_DOVECOT_TESTS is not set".into());
    }
    if !Path::new("/usr/sbin/dovecot").exists() {
        return Some(
            "/usr/sbin/dovecot is missing (apt-get install dovecot-imapd dovecot-lmtpd)".into(),
        );
    }
    if !nix_is_root() {
        return Some("not running as root".into());
    }
    if id("vmail", "-u").is_none() {
        return Some("no vmail user (useradd --system --user-group vmail)".into());
    }
    None
}

fn nix_is_root() -> bool {
    id_self() == Some(0)
}

fn id_self() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn id(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(user).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process killed (SIGTERM) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

struct Relay {
    dir: tempfile::TempDir,
    mbox: PathBuf,
    imap_port: u16,
    lmtp_port: u16,
    // Dropped in order: dovecot first, then the services.
    _dovecot: Proc,
    _services: Vec<Proc>,
}

impl Relay {
    fn start() -> Relay {
        Relay::start_with("", "")
    }

    /// `notify_url` goes to chatmail-metadata; `extra_conf` is appended to Dovecot's config.
    fn start_with(notify_url: &str, extra_conf: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let vmail_uid = id("vmail", "-u").unwrap();
        let vmail_gid = id("vmail", "-g").unwrap();
        let mbox = root.join("mail");
        std::fs::create_dir_all(&mbox).unwrap();
        std::os::unix::fs::chown(&mbox, Some(vmail_uid), Some(vmail_gid)).unwrap();

        let ini = root.join("chatmail.ini");
        std::fs::write(
            &ini,
            format!(
                "[params]\nmail_domain = {DOMAIN}\nmailboxes_dir = {}\npassdb_path = {}\n\
                 max_load_1m = 10000\nmin_available_memory = 0\nmin_free_disk_space = 0\n",
                mbox.display(),
                root.join("passdb.sqlite").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).unwrap();

        // The services run as vmail like on a relay; the binaries are copied to a place
        // vmail can read.
        let mut services = Vec::new();
        let mut sockets = Vec::new();
        for (program, name) in [
            ("doveauth", "doveauth"),
            ("lastlogin", "lastlogin"),
            ("chatmail-metadata", "metadata"),
        ] {
            // the copy keeps the program's name: the multi-call binary runs as it
            let exe = root.join(program);
            std::fs::copy(support::program(program), &exe).unwrap();
            let sockdir = root.join(format!("run-{name}"));
            std::fs::create_dir_all(&sockdir).unwrap();
            std::os::unix::fs::chown(&sockdir, Some(vmail_uid), Some(vmail_gid)).unwrap();
            let socket = sockdir.join(format!("{name}.socket"));
            let log = std::fs::File::create(root.join(format!("{name}.log"))).unwrap();
            let child = Command::new("setpriv")
                .env("CHATMAIL_NOTIFY_URL", notify_url)
                .args(["--reuid=vmail", "--regid=vmail", "--init-groups", "--"])
                .arg(&exe)
                .arg(&socket)
                .arg(&ini)
                .stdin(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            services.push(Proc(child));
            wait_until(&format!("{name} socket"), || socket.exists());
            // Dovecot's auth and mail processes run as other users than vmail.
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
            sockets.push(socket);
        }

        let imap_port = free_port();
        let lmtp_port = free_port();
        let auth_conf = root.join("auth.conf");
        std::fs::write(
            &auth_conf,
            format!(
                "uri = proxy:{}:auth\niterate_disable = no\niterate_prefix = userdb/\n\
                 default_pass_scheme = plain\npassword_key = passdb/%Ew\"%Eu\nuser_key = userdb/%Eu\n",
                sockets[0].display()
            ),
        )
        .unwrap();
        let conf = root.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                r#"base_dir = {root}/dovecot-run
state_dir = {root}/dovecot-state
log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{mbox}/%u
mail_uid = vmail
mail_gid = vmail
mail_privileged_group = vmail
mail_attribute_dict = proxy:{metadata}:metadata
passdb {{
  driver = dict
  args = {auth_conf}
}}
userdb {{
  driver = dict
  args = {auth_conf}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
protocol imap {{
  mail_plugins = $mail_plugins last_login
  imap_metadata = yes
}}
plugin {{
  last_login_dict = proxy:{lastlogin}:lastlogin
  last_login_precision = s
}}
{extra_conf}
"#,
                root = root.display(),
                mbox = mbox.display(),
                metadata = sockets[2].display(),
                lastlogin = sockets[1].display(),
                auth_conf = auth_conf.display(),
            ),
        )
        .unwrap();
        let dovecot = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dovecot = Proc(dovecot);
        wait_until("dovecot imap port", || {
            TcpStream::connect(("127.0.0.1", imap_port)).is_ok()
        });
        Relay {
            dir,
            mbox,
            imap_port,
            lmtp_port,
            _dovecot: dovecot,
            _services: services,
        }
    }

    /// One LMTP transaction; returns the RCPT replies, then the reply(ies) after DATA.
    fn lmtp_deliver(&self, from: &str, rcpts: &[&str]) -> Vec<String> {
        self.lmtp_deliver_body(from, rcpts, "hello")
    }

    fn lmtp_deliver_body(&self, from: &str, rcpts: &[&str], body: &str) -> Vec<String> {
        let s = TcpStream::connect(("127.0.0.1", self.lmtp_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut read_reply = || {
            let mut all = String::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                all.push_str(&l);
                if l.len() < 4 || l.as_bytes()[3] != b'-' {
                    return all;
                }
            }
        };
        assert!(read_reply().starts_with("220"));
        write!(w, "LHLO test\r\n").unwrap();
        assert!(read_reply().starts_with("250"));
        write!(w, "MAIL FROM:<{from}>\r\n").unwrap();
        assert!(read_reply().starts_with("250"));
        let mut replies = Vec::new();
        let mut accepted = 0;
        for rcpt in rcpts {
            write!(w, "RCPT TO:<{rcpt}>\r\n").unwrap();
            let reply = read_reply();
            accepted += usize::from(reply.starts_with("250"));
            replies.push(reply);
        }
        if accepted > 0 {
            write!(w, "DATA\r\n").unwrap();
            assert!(read_reply().starts_with("354"));
            write!(w, "From: {from}\r\nSubject: hi\r\n\r\n{body}\r\n.\r\n").unwrap();
            // LMTP answers once per accepted recipient.
            for _ in 0..accepted {
                replies.push(read_reply());
            }
        }
        write!(w, "QUIT\r\n").unwrap();
        replies
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn imap(&self) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", self.imap_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut imap = Imap {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            tag: 0,
        };
        let greeting = imap.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        imap
    }
}

struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    /// `LOGIN` with both arguments quoted; returns the tagged status.
    fn login(&mut self, user: &str, password: &str) -> String {
        self.cmd(&format!("LOGIN {} {}", quoted(user), quoted(password)))
            .1
    }

    /// Send a command; return (untagged lines, tagged status line).
    fn cmd(&mut self, command: &str) -> (Vec<String>, String) {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        write!(self.writer, "{tag} {command}\r\n").unwrap();
        let mut untagged = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed after {command:?}");
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                return (untagged, rest.trim_end().to_owned());
            }
            untagged.push(l);
        }
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
        * 86_400
}

fn mtime(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

macro_rules! require_dovecot {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("skipping Dovecot test: {reason}");
            return;
        }
    };
}

#[test]
fn imap_login_creates_account_and_records_last_login() {
    require_dovecot!();
    let relay = Relay::start();
    let addr = format!("abcdefghi@{DOMAIN}");
    let password = "s3cr3t\"pw1\\x";

    let mut imap = relay.imap();
    let status = imap.login(&addr, password);
    assert!(
        status.starts_with("OK"),
        "{status}\n{}",
        relay.log("dovecot")
    );
    let pwfile = relay.mbox.join(&addr).join("password");
    assert!(pwfile.exists());
    assert!(
        std::fs::read_to_string(&pwfile)
            .unwrap()
            .starts_with("{SHA512-CRYPT}$6$")
    );
    assert!(relay.mbox.join(&addr).join("enforceE2EEincoming").exists());
    assert!(
        relay
            .log("doveauth")
            .contains(&format!("Created address: {addr}"))
    );
    let (_, status) = imap.cmd("SELECT INBOX");
    assert!(status.starts_with("OK"), "{status}");
    imap.cmd("LOGOUT");

    // The last_login plugin reported the login: mtime is today's UTC midnight.
    wait_until("last-login update", || mtime(&pwfile) == today());

    // Wrong password for an existing account fails; the right one still works.
    let mut imap = relay.imap();
    let status = imap.login(&addr, "wrong-password");
    assert!(status.starts_with("NO"), "{status}");
    let status = imap.login(&addr, password);
    assert!(status.starts_with("OK"), "{status}");
}

#[test]
fn unusual_passwords_round_trip() {
    require_dovecot!();
    let relay = Relay::start();
    // %E escapes quote, apostrophe and backslash; non-ASCII and spaces pass as they are.
    for (i, password) in [
        "it's \"quoted\" \\ too",
        "pässwörd mit Leerzeichen",
        "пароль-密码-🔑",
    ]
    .iter()
    .enumerate()
    {
        let addr = format!("pwtest{i:03}@{DOMAIN}");
        let mut imap = relay.imap();
        let status = imap.login(&addr, password);
        assert!(status.starts_with("OK"), "{password:?}: {status}");
        imap.cmd("LOGOUT");
        let stored = std::fs::read_to_string(relay.mbox.join(&addr).join("password")).unwrap();
        assert!(
            chatmaild::crypt::verify_password(password, &stored),
            "{password:?}"
        );
        let mut imap = relay.imap();
        let status = imap.login(&addr, password);
        assert!(
            status.starts_with("OK"),
            "second login {password:?}: {status}"
        );
    }
    // Dovecot itself refuses control characters in passwords; nothing gets created.
    let addr = format!("ctrlchars@{DOMAIN}");
    let mut imap = relay.imap();
    let status = imap.login(&addr, "ctrl\u{1}chars-pw");
    assert!(status.starts_with("NO"), "{status}");
    assert!(!relay.mbox.join(&addr).exists());
}

#[test]
fn imap_login_refused_for_bad_new_accounts() {
    require_dovecot!();
    let relay = Relay::start();
    for (user, password) in [
        (format!("short@{DOMAIN}"), "long-enough-password"),
        (format!("abcdefghi@{DOMAIN}"), "short"),
        ("abcdefghi@other.example".to_owned(), "long-enough-password"),
    ] {
        let mut imap = relay.imap();
        let status = imap.login(&user, password);
        assert!(status.starts_with("NO"), "{user}: {status}");
        assert!(!relay.mbox.join(&user).exists(), "{user}");
    }
}

#[test]
fn metadata_and_lmtp_delivery() {
    require_dovecot!();
    let relay = Relay::start();
    let addr = format!("bcdefghij@{DOMAIN}");
    let mut imap = relay.imap();
    let status = imap.login(&addr, "long-enough-pw");
    assert!(status.starts_with("OK"), "{status}");

    let (lines, status) = imap.cmd("GETMETADATA \"\" (/shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/maxsmtprecipients)");
    assert!(status.starts_with("OK"), "{status}");
    let all = lines.concat();
    assert!(all.contains(&format!("https://{DOMAIN}")), "{all}");
    assert!(all.contains("1000"), "{all}");

    let (_, status) = imap.cmd("SETMETADATA INBOX (/private/devicetoken \"tok-AAA\")");
    assert!(
        status.starts_with("OK"),
        "{status}\n{}",
        relay.log("metadata")
    );
    let (lines, status) = imap.cmd("GETMETADATA INBOX (/private/devicetoken)");
    assert!(status.starts_with("OK"), "{status}");
    assert!(lines.concat().contains("tok-AAA"), "{lines:?}");
    let meta = std::fs::read_to_string(relay.mbox.join(&addr).join("metadata.json")).unwrap();
    assert!(meta.contains("tok-AAA"), "{meta}");
    imap.cmd("LOGOUT");

    // LMTP: delivery to the existing account works, unknown accounts are rejected.
    let replies = relay.lmtp_deliver(
        "sender@other.example",
        &[&format!("nobody123@{DOMAIN}"), &addr],
    );
    assert!(replies[0].starts_with("550"), "{replies:?}");
    assert!(replies[1].starts_with("250"), "{replies:?}");
    assert!(replies[2].starts_with("250"), "{replies:?}");
    let new_mail = std::fs::read_dir(relay.mbox.join(&addr).join("new"))
        .unwrap()
        .count();
    assert_eq!(new_mail, 1);
}

#[test]
fn push_token_caps_answer_the_client() {
    require_dovecot!();
    let relay = Relay::start();
    let addr = format!("cdefghijk@{DOMAIN}");
    let mut imap = relay.imap();
    assert!(imap.login(&addr, "long-enough-pw").starts_with("OK"));
    let set = |imap: &mut Imap, token: &str| {
        imap.cmd(&format!(
            "SETMETADATA INBOX (/private/devicetoken {})",
            quoted(token)
        ))
        .1
    };
    // chatmaild::metadata::tokens::MAX_TOKENS
    for i in 0..16 {
        let status = set(&mut imap, &format!("tok-{i}"));
        assert!(status.starts_with("OK"), "{i}: {status}");
    }
    let refused = set(&mut imap, "tok-one-too-many");
    assert!(refused.starts_with("NO"), "{refused}");
    eprintln!("Dovecot's answer to a refused token: {refused}");
    // A device re-registering its token still works at the cap.
    let again = set(&mut imap, "tok-3");
    assert!(again.starts_with("OK"), "{again}");
    let huge = set(&mut imap, &"x".repeat(4097));
    assert!(huge.starts_with("NO"), "{huge}");
    let meta = std::fs::read_to_string(relay.mbox.join(&addr).join("metadata.json")).unwrap();
    assert!(
        !meta.contains("tok-one-too-many") && !meta.contains("xxxx"),
        "{meta}"
    );
}

/// Minimal stand-in for the notification proxy: records POST bodies, answers 200.
fn fake_notification_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if l == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn delivery_triggers_push_via_lua_hook() {
    require_dovecot!();
    // The deployment's Lua hook, so this also checks that template against our service.
    let lua =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/dovecot/push_notification.lua");
    if !lua.exists() {
        eprintln!("skipping: {} not found", lua.display());
        return;
    }
    let (url, bodies) = fake_notification_proxy();
    let relay = Relay::start_with(
        &url,
        &format!(
            "protocol lmtp {{\n  mail_plugins = $mail_plugins mail_lua notify push_notification push_notification_lua\n}}\n\
             plugin {{\n  push_notification_driver = lua:file={}\n}}\n",
            lua.display()
        ),
    );
    let addr = format!("pushtest1@{DOMAIN}");
    let mut imap = relay.imap();
    let status = imap.login(&addr, "long-enough-pw");
    assert!(status.starts_with("OK"), "{status}");
    let (_, status) = imap.cmd("SETMETADATA INBOX (/private/devicetoken \"tok-PUSH\")");
    assert!(status.starts_with("OK"), "{status}");
    imap.cmd("LOGOUT");

    let replies = relay.lmtp_deliver("sender@other.example", &[&addr]);
    assert!(
        replies.iter().all(|r| r.starts_with("250")),
        "{replies:?}\n{}",
        relay.log("metadata")
    );
    wait_until("push notification", || !bodies.lock().unwrap().is_empty());
    assert_eq!(*bodies.lock().unwrap(), ["tok-PUSH"]);
    let queue = relay.mbox.join("pending_notifications");
    wait_until("queue drained", || {
        std::fs::read_dir(&queue).unwrap().count() == 0
    });

    // A message from the user to itself does not notify.
    let replies = relay.lmtp_deliver(&addr, &[&addr]);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(bodies.lock().unwrap().len(), 1);
}

#[test]
fn quota_warning_runs_quota_expire() {
    require_dovecot!();
    let quota_expire = support::program("chatmail-quota-expire");
    let relay_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(relay_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = relay_dir.path().join("chatmail-quota-expire");
    std::fs::copy(&quota_expire, &script).unwrap();
    // Quota 2 MB; at 75 % Dovecot runs the expiry with a 1 MB (70 %) target, as deployed.
    let relay = Relay::start_with(
        "",
        &format!(
            "mail_plugins = $mail_plugins quota\n\
             plugin {{\n  quota = maildir:User quota\n  quota_grace = 0\n  quota_rule = *:storage=2M\n\
             quota_warning = storage=75%% quota-warning 1 %h\n}}\n\
             service quota-warning {{\n  executable = script {}\n  user = vmail\n\
             unix_listener quota-warning {{\n    user = vmail\n    mode = 0600\n  }}\n}}\n",
            script.display()
        ),
    );
    let addr = format!("quotatest@{DOMAIN}");
    let mut imap = relay.imap();
    let status = imap.login(&addr, "long-enough-pw");
    assert!(status.starts_with("OK"), "{status}");
    let (_, status) = imap.cmd("SELECT INBOX");
    assert!(status.starts_with("OK"), "{status}");
    imap.cmd("LOGOUT");

    // Three old 400 kB messages, named the way Dovecot names them; the 500 kB delivery
    // below pushes the mailbox past 75 % of the quota.
    let maildir = relay.mbox.join(&addr);
    let vmail = (id("vmail", "-u").unwrap(), id("vmail", "-g").unwrap());
    let old_ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10 * 86_400;
    let size = 400_000;
    let mut old = Vec::new();
    for i in 0..3 {
        let p = maildir
            .join("cur")
            .join(format!("{}.M{i}P1.test,S={size},W={size}:2,S", old_ts + i));
        std::fs::write(&p, vec![b'x'; size]).unwrap();
        std::os::unix::fs::chown(&p, Some(vmail.0), Some(vmail.1)).unwrap();
        old.push(p);
    }
    // Make Dovecot recount the quota from the file names.
    let _ = std::fs::remove_file(maildir.join("maildirsize"));

    let body = "y".repeat(500_000);
    let replies = relay.lmtp_deliver_body("sender@other.example", &[&addr], &body);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    wait_until("quota expiry", || !old[0].exists() && !old[1].exists());
    assert!(old[2].exists(), "expiry stops once below the target");
    let new = std::fs::read_dir(maildir.join("new")).unwrap().count();
    assert_eq!(new, 1, "fresh mail is never expired");
}
