//! A relay for Debian 13: Dovecot 2.4's config and auth, Debian's packages, 13's drop-in path.

use std::collections::BTreeMap;

use operations::Resource;

use super::super::release::Release;

/// (path -> content of every file, package names, command descriptions) on Debian 13.
fn trixie(ini: &str) -> (BTreeMap<String, String>, Vec<String>, Vec<String>) {
    let state = super::state_on(ini, false, &[], Release::Trixie);
    let (mut files, mut packages, mut commands) = (BTreeMap::new(), Vec::new(), Vec::new());
    for r in &state.resources {
        match r {
            Resource::File(f) => {
                files.insert(
                    f.path.clone(),
                    String::from_utf8_lossy(&f.content).into_owned(),
                );
            }
            Resource::Package(p) if p.present => packages.push(p.name.clone()),
            Resource::Command(c) => commands.push(c.description.clone()),
            _ => {}
        }
    }
    (files, packages, commands)
}

#[test]
fn debian_13_gets_dovecot_24_with_lua_auth_and_no_chatmail_build() {
    let (f, packages, commands) =
        trixie("[params]\nmail_domain = chat.example.org\nacme_email = a@example.org\n");
    super::every_template_is_used(&f);
    let conf = &f["/etc/dovecot/dovecot.conf"];
    assert!(
        conf.starts_with("dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.0\n"),
        "{conf}"
    );
    assert!(conf.contains("passdb lua {\n  lua_file = /etc/dovecot/auth.lua\n"));
    assert!(conf.contains("  XDELTAPUSH = yes\n  XCHATMAIL = yes\n"));
    // 2.4's imap offers COMPRESS by default: off unless chatmail.ini asks for it
    assert!(conf.contains("  \"COMPRESS=DEFLATE\" = no\n"));
    assert!(conf.contains("mail_path = /home/vmail/mail/chat.example.org/%{user}\n"));
    assert!(conf.contains("args = 350 /home/vmail/mail/chat.example.org/%{user}\n"));
    // 2.3's variables stay literal in 2.4: none may be left
    for old in ["%u", "%h", "$default_internal", "ssl_cert =", "plugin {"] {
        assert!(!conf.contains(old), "2.3 form {old:?} in the 2.4 config");
    }
    assert!(f["/etc/dovecot/auth.lua"].contains("/run/doveauth/doveauth.socket"));
    assert!(!f.contains_key("/etc/dovecot/auth.conf"));
    assert!(f.contains_key("/etc/systemd/system/postfix.service.d/10_restart.conf"));
    assert!(!f.contains_key("/etc/systemd/system/postfix@.service.d/10_restart.conf"));
    for p in super::super::components::dovecot::DEBIAN_24_PACKAGES {
        assert!(packages.iter().any(|n| n == p), "{p} not installed");
    }
    assert!(
        !commands.iter().any(|c| c.contains("chatmail's build")),
        "{commands:?}"
    );
}

#[test]
fn every_dovecot_24_option_renders() {
    for ini in [
        "[params]\nmail_domain = _relay-a.test\nimap_rawlog = true\n",
        "[params]\nmail_domain = 203.0.113.7\ndisable_ipv6 = true\n",
        "[params]\nmail_domain = chat.example.org\ntls_external_cert_and_key = /etc/my/cert.pem /etc/my/key.pem\nmtail_address = 127.0.0.1\nimap_compress = true\nprivacy_mail = privacy@example.org\n",
    ] {
        let (f, _, _) = trixie(ini);
        super::every_template_is_used(&f);
        let conf = &f["/etc/dovecot/dovecot.conf"];
        assert!(conf.starts_with("dovecot_config_version"), "{ini}");
        assert_eq!(
            conf.contains("COMPRESS=DEFLATE"),
            !ini.contains("imap_compress = true"),
            "{ini}"
        );
    }
}

#[test]
fn a_check_only_one_release_makes_runs_only_on_that_release() {
    let ini = "[params]\nmail_domain = chat.example.org\nacme_email = a@example.org\n";
    let query = super::with_relay(ini, false, &[], Release::Bookworm, |relay| {
        super::super::fact_query(relay).unwrap()
    });
    // the probe whether chatmail's Dovecot .debs can be downloaded: 12's state only
    let (key, probe) = query
        .checks
        .iter()
        .find(|(key, _)| key.contains("curl -fsI"))
        .expect("the download probe is asked");
    let gate = "case \"$(. /etc/os-release; echo \"$VERSION_ID\")\" in 12) ;; *) exit 1 ;; esac\n";
    assert_eq!(*probe, format!("{gate}{key}"));
    // checks both releases make run everywhere, as they are
    assert!(query.checks.iter().any(|(key, command)| key == command));
    // the gate passes on the release it names and stops elsewhere (this machine runs 12)
    let here = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if here.contains("VERSION_ID=\"12\"") {
        for (release, ok) in [("12", true), ("13", false)] {
            let script = format!("( {}true )", gate.replace("12)", &format!("{release})")));
            let status = std::process::Command::new("sh")
                .args(["-c", &script])
                .status()
                .unwrap();
            assert_eq!(status.success(), ok, "{script}");
        }
    }
}
