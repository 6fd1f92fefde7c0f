//! Every template rendered for the four kinds of relay, with what distinguishes them.

use std::collections::BTreeMap;

use ::chatmaild::config::Config;
use operations::Resource;

use super::*;

/// The relay binaries read from `--bin-dir`: one multi-call binary.
const BINARIES: &[&str] = &["chatmaild"];

/// path -> content of every file in the relay's state for this chatmail.ini text.
fn files(ini: &str) -> BTreeMap<String, String> {
    files_with(ini, false)
}

fn files_with(ini: &str, website_only: bool) -> BTreeMap<String, String> {
    state_for(ini, website_only, &[])
}

fn files_skipping(ini: &str, skip: &[&str]) -> BTreeMap<String, String> {
    state_for(ini, false, skip)
}

fn state_for(ini: &str, website_only: bool, skip: &[&str]) -> BTreeMap<String, String> {
    state_with_skip(ini, website_only, skip)
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::File(f) => Some((
                f.path.clone(),
                String::from_utf8_lossy(&f.content).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// The relay's desired state for this chatmail.ini text (validated).
fn state_with(ini: &str, website_only: bool) -> operations::State {
    state_with_skip(ini, website_only, &[])
}

pub(crate) fn state_with_skip(ini: &str, website_only: bool, skip: &[&str]) -> operations::State {
    state_on(ini, website_only, skip, release::Release::Bookworm)
}

/// The relay's desired state for a host of Debian `release`.
fn state_on(
    ini: &str,
    website_only: bool,
    skip: &[&str],
    release: release::Release,
) -> operations::State {
    with_relay(ini, website_only, skip, release, |relay| {
        let state = desired_state(relay).unwrap();
        state.validate().unwrap();
        state
    })
}

/// Calls `f` with the relay for this chatmail.ini text on a host of Debian `release`, its
/// binaries stand-ins in a temporary `--bin-dir`.
fn with_relay<T>(
    ini: &str,
    website_only: bool,
    skip: &[&str],
    release: release::Release,
    f: impl FnOnce(&Relay) -> T,
) -> T {
    let (relay, dir) = test_relay(ini, website_only, skip);
    let result = f(&relay.with_release(release));
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

/// A relay for this chatmail.ini text with stand-in binaries in the returned directory.
fn test_relay(ini: &str, website_only: bool, skip: &[&str]) -> (Relay, std::path::PathBuf) {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("relay-tpl-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for b in BINARIES {
        // stand-ins: only their bytes are read here, nothing runs them
        std::fs::write(dir.join(b), format!("binary {b}")).unwrap();
    }
    let path = dir.join("chatmail.ini");
    std::fs::write(&path, ini).unwrap();
    let options = RelayOptions {
        bin_dir: Some(dir.clone()),
        version: "test\n".into(),
        arch: "x86_64".into(),
        website_only,
        skip: skip.iter().map(|s| s.to_string()).collect(),
        ..RelayOptions::default()
    };
    let relay = Relay::new(
        Config::load(&path).unwrap(),
        ini.as_bytes().to_vec(),
        options,
    )
    .unwrap();
    (relay, dir)
}

/// The first facts query covers every fact the plan reads, for a Debian 12 and a Debian 13
/// host alike (a fact read but not asked panics in this debug build: see facts::Answers).
#[test]
fn the_first_query_covers_what_the_plan_reads_on_12_and_13() {
    for ini in [
        "[params]\nmail_domain = chat.example.org\nacme_email = a@example.org\nmtail_address = 10.0.0.9\n",
        "[params]\nmail_domain = _relay.test\ntls_external_cert_and_key = /c.pem /k.pem\n",
        "[params]\nmail_domain = 10.1.2.3\n",
    ] {
        let (relay, dir) = test_relay(ini, false, &[]);
        let query = fact_query(&relay).unwrap();
        for (version, installed) in [("12", false), ("12", true), ("13", false), ("13", true)] {
            let mut facts = if installed {
                packages_installed(&query)
            } else {
                query.unanswered()
            };
            facts.os = facts::OsRelease {
                id: "debian".into(),
                version_id: version.into(),
                ..Default::default()
            };
            facts.arch = "x86_64".into();
            preflight::check(&relay.config, &facts).unwrap();
            // `for_host` as `run` does, but for the check of the stand-in binaries
            let release = release::Release::of(&facts.os).unwrap();
            let host = relay.with_release(release);
            assert_eq!(host.release.version_id(), version);
            let state = desired_state(&host).unwrap();
            let plan = operations::plan(&state, &facts).unwrap();
            assert!(!plan.is_empty(), "a fresh host gets the relay");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A host with every asked package installed: the plan goes past the package barrier.
fn packages_installed(query: &facts::Query) -> facts::HostFacts {
    let mut facts = query.unanswered();
    for name in &query.packages {
        let package = facts::Package {
            name: name.clone(),
            status: "ii".into(),
            version: "1".into(),
        };
        facts.packages.insert(name.clone(), package);
    }
    facts
}

/// The assertion above has teeth: a guard the query does not ask about fails loudly.
#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "the facts query did not ask for check \"test -e /not-asked\"")
)]
fn a_guard_missing_from_the_query_panics_in_debug_builds() {
    let (relay, dir) = test_relay("[params]\nmail_domain = chat.example.org\n", false, &[]);
    let mut facts = packages_installed(&fact_query(&relay).unwrap());
    facts.os.id = "debian".into();
    let mut state = desired_state(&relay).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    state.add(operations::Command::new(
        "added after the query",
        "true",
        operations::Guard::Unless("test -e /not-asked".into()),
    ));
    let _ = operations::plan(&state, &facts);
}

fn every_template_is_used(f: &BTreeMap<String, String>) {
    for (path, content) in f.iter().filter(|(p, _)| !p.ends_with(".png")) {
        assert!(
            !content.contains("{{") && !content.contains("{%"),
            "{path} has template syntax left"
        );
    }
}

#[test]
fn domain_relay_with_acme() {
    let f = files("[params]\nmail_domain = chat.example.org\nacme_email = admin@example.org\n");
    every_template_is_used(&f);
    let nginx = &f["/etc/nginx/nginx.conf"];
    assert!(nginx.contains("return 301 dcaccount:https://chat.example.org/new;"));
    assert!(!nginx.contains("limit_req_zone"));
    assert!(nginx.contains("proxy_pass http://acmetool;"));
    assert!(nginx.contains("listen [::]:443;"));
    assert!(
        f["/var/lib/acme/conf/target"]
            .contains("provider: https://acme-v02.api.letsencrypt.org/directory")
    );
    assert!(
        f["/var/lib/acme/conf/responses"].contains("\"acme-enter-email\": \"admin@example.org\"")
    );
    assert!(f["/var/lib/acme/desired/chat.example.org"].contains("- mta-sts.chat.example.org"));
    assert!(
        f["/etc/postfix/main.cf"]
            .contains("smtpd_tls_cert_file = /var/lib/acme/live/chat.example.org/fullchain\n")
    );
    assert!(f["/etc/postfix/main.cf"].contains("non_smtpd_milters = unix:opendkim/opendkim.sock"));
    assert!(
        f["/etc/postfix/master.cf"].contains("  -o smtpd_milters=unix:opendkim/opendkim.sock\n")
    );
    assert!(f["/etc/postfix/master.cf"].contains("smtpd_client_connection_count_limit=200\n"));
    assert!(f["/etc/dovecot/dovecot.conf"].contains(
        "quota_warning = storage=75%% quota-warning 350 /home/vmail/mail/chat.example.org/%u"
    ));
    assert!(f["/etc/dovecot/dovecot.conf"].contains("imap_hibernate_timeout = 30s"));
    assert_eq!(
        f["/etc/dkimkeys/KeyTable"],
        "opendkim._domainkey.chat.example.org chat.example.org:opendkim:/etc/dkimkeys/opendkim.private\n"
    );
    assert_eq!(f["/etc/mailname"], "chat.example.org\n");
    let autoconfig = &f["/var/www/html/.well-known/autoconfig/mail/config-v1.1.xml"];
    let ports: Vec<&str> = autoconfig
        .match_indices("<port>")
        .map(|(i, _)| &autoconfig[i + 6..i + 9])
        .collect();
    assert_eq!(ports, ["993", "143", "443", "465", "587", "443"]);
    assert_eq!(
        f["/var/www/html/.well-known/mta-sts.txt"],
        "version: STSv1\nmode: enforce\nmx: chat.example.org\nmax_age: 2419200\n"
    );
}

#[test]
fn underscore_relay_is_self_signed() {
    let f = files("[params]\nmail_domain = _relay-a.test\n");
    every_template_is_used(&f);
    let nginx = &f["/etc/nginx/nginx.conf"];
    assert!(nginx.contains("limit_req_zone $binary_remote_addr zone=newaccount:10m rate=2r/s;"));
    assert!(nginx.contains("limit_req zone=newaccount burst=5 nodelay;"));
    assert!(
        !nginx.contains("dcaccount:"),
        "no GET redirect of /new in self mode"
    );
    assert!(nginx.contains("ssl_certificate /etc/ssl/certs/mailserver.pem;"));
    assert!(!f.contains_key("/var/lib/acme/conf/target"));
    assert!(f["/etc/dovecot/dovecot.conf"].contains("ssl_key = </etc/ssl/private/mailserver.key"));
}

#[test]
fn ipv4_relay_has_no_dkim_and_bracketed_domain() {
    let f = files("[params]\nmail_domain = 203.0.113.7\ndisable_ipv6 = true\n");
    every_template_is_used(&f);
    let main = &f["/etc/postfix/main.cf"];
    assert!(main.contains("mydestination = [203.0.113.7]\n"));
    assert!(main.contains("myhostname = 7.113.0.203.in-addr.arpa\n"));
    assert!(main.contains("inet_protocols = ipv4\n"));
    assert!(!main.contains("milter"));
    assert!(!f["/etc/postfix/master.cf"].contains("opendkim"));
    assert!(!f.contains_key("/etc/opendkim.conf"));
    assert_eq!(f["/etc/mailname"], "[203.0.113.7]\n");
    assert!(!f["/etc/nginx/nginx.conf"].contains("[::]"));
    assert!(f["/etc/dovecot/dovecot.conf"].starts_with("# Dovecot"));
    assert!(f["/etc/dovecot/dovecot.conf"].contains("\nlisten = 0.0.0.0\n"));
    assert!(f["/etc/unbound/unbound.conf.d/chatmail.conf"].contains("do-ip6: no"));
}

#[test]
fn external_certificate_relay() {
    let f = files(
        "[params]\nmail_domain = chat.example.org\ntls_external_cert_and_key = /etc/my/cert.pem /etc/my/key.pem\nmtail_address = 127.0.0.1\nimap_compress = true\nprivacy_mail = privacy@example.org\n",
    );
    every_template_is_used(&f);
    assert!(f["/etc/nginx/nginx.conf"].contains("ssl_certificate_key /etc/my/key.pem;"));
    assert_eq!(
        f["/etc/systemd/system/tls-cert-reload.path"]
            .lines()
            .find(|l| l.starts_with("PathChanged")),
        Some("PathChanged=/etc/my/cert.pem")
    );
    let dovecot = &f["/etc/dovecot/dovecot.conf"];
    assert!(dovecot.contains("last_login imap_zlib\n"));
    assert!(
        !dovecot.contains("imap_hibernate_timeout"),
        "no hibernation with COMPRESS"
    );
    assert!(dovecot.contains("mail_server_admin = mailto:privacy@example.org"));
    assert!(dovecot.contains("address = 127.0.0.1"));
    assert!(f["/etc/systemd/system/mtail.service"].contains("--address=127.0.0.1 --port=3903"));
    assert!(f["/etc/mtail/delivered_mail.mtail"].contains("counter delivered_mail"));
}

#[test]
fn iroh_relay_only_when_no_other_is_named() {
    let local = files("[params]\nmail_domain = chat.example.org\n");
    assert!(local["/etc/iroh-relay.toml"].contains("http_bind_addr = \"[::]:3340\""));
    assert!(local["/etc/systemd/system/turnserver.service"].contains("--realm chat.example.org"));
    assert!(
        !local.contains_key("/etc/systemd/system/mtail.service"),
        "no mtail without mtail_address"
    );
    let other =
        files("[params]\nmail_domain = chat.example.org\niroh_relay = https://iroh.example.org\n");
    assert!(!other.contains_key("/etc/iroh-relay.toml"));
}

#[test]
fn units_point_at_the_binaries_and_the_ini() {
    let f = files("[params]\nmail_domain = _relay-a.test\n");
    let doveauth = &f["/etc/systemd/system/doveauth.service"];
    assert!(doveauth.contains(
        "ExecStart=/usr/local/bin/doveauth /run/doveauth/doveauth.socket /usr/local/lib/chatmaild/chatmail.ini\n"
    ));
    assert!(doveauth.contains("UMask=0077"));
    assert!(!f["/etc/systemd/system/lastlogin.service"].contains("UMask"));
    assert!(
        f["/etc/systemd/system/lastlogin.service"].contains("RuntimeDirectory=chatmail-lastlogin")
    );
    assert!(f["/etc/systemd/system/filtermail-transport.service"].contains("LimitNOFILE=524288"));
    assert!(f["/etc/systemd/system/chatmail-fsreport.timer"].contains("Persistent=true"));
    assert!(f["/etc/systemd/system/chatmail-expire.service"].contains(
        "ExecStart=/usr/local/bin/chatmail-expire /usr/local/lib/chatmaild/chatmail.ini -v --remove"
    ));
    assert_eq!(
        f["/usr/local/lib/chatmaild/chatmail.ini"],
        "[params]\nmail_domain = _relay-a.test\n"
    );
}

#[test]
fn website_only_is_the_pages_and_nothing_else() {
    let ini = "[params]\nmail_domain = chat.example.org\n";
    let all = files(ini);
    let pages = files_with(ini, true);
    assert!(pages.contains_key("/var/www/html/index.html"));
    assert!(pages.keys().all(|p| p.starts_with("/var/www/html/")));
    assert!(
        !pages.contains_key("/var/www/html/.well-known/mta-sts.txt"),
        "rendered config files belong to the full deploy"
    );
    for (path, content) in &pages {
        assert_eq!(&all[path], content, "{path} differs from the full deploy's");
    }
}

#[test]
fn mtail_is_stopped_when_the_ini_no_longer_sets_its_address() {
    let mtail = |ini: &str| {
        state_with(ini, false)
            .resources
            .into_iter()
            .find_map(|r| match r {
                Resource::Service(s) if s.unit == "mtail.service" => Some((s.enabled, s.running)),
                _ => None,
            })
    };
    assert_eq!(
        mtail("[params]\nmail_domain = chat.example.org\n"),
        Some((Some(false), Some(false)))
    );
    assert_eq!(
        mtail("[params]\nmail_domain = chat.example.org\nmtail_address = 127.0.0.1\n"),
        Some((Some(true), Some(true)))
    );
}

#[test]
fn a_skipped_iroh_relay_is_not_advertised() {
    let ini = "[params]\nmail_domain = chat.example.org\n";
    let ini_path = "/usr/local/lib/chatmaild/chatmail.ini";
    let deployed = |skip: &[&str]| {
        let text = files_skipping(ini, skip)[ini_path].clone();
        (Config::parse(&text, "chatmail.ini").unwrap(), text)
    };
    let (normal, text) = deployed(&[]);
    assert_eq!(text, ini, "the operator's file byte for byte");
    assert_eq!(normal.iroh_relay, "https://chat.example.org");
    let (skipped, text) = deployed(&["iroh-relay"]);
    assert_eq!(skipped.iroh_relay, "", "{text}");
    assert!(!skipped.enable_iroh_relay);
    assert!(text.starts_with(ini.lines().next().unwrap()), "{text}");
    assert!(files_skipping(ini, &[]).contains_key("/etc/iroh-relay.toml"));
    assert!(!files_skipping(ini, &["iroh-relay"]).contains_key("/etc/iroh-relay.toml"));
    // a relay named by the operator stays advertised whatever is skipped
    let named = "[params]\nmail_domain = chat.example.org\niroh_relay = https://iroh.example.net\n";
    let text = files_skipping(named, &["iroh-relay"])[ini_path].clone();
    assert_eq!(text, named);
}

#[test]
fn filtermail_sockets_hold_the_configured_ports_and_only_their_own_change_restarts_them() {
    let ini = "[params]\nmail_domain = _relay-a.test\nfiltermail_smtp_port_incoming = 10091\n";
    let f = files(ini);
    assert_eq!(
        f["/etc/systemd/system/filtermail-incoming.socket"],
        "[Unit]\nDescription=chatmail incoming mail filter: listening sockets, kept while the \
         service restarts\n\n[Socket]\nListenStream=127.0.0.1:10091\nListenStream=127.0.0.1:10082\n\
         FileDescriptorName=incoming\n\
         # connections made during a restart queue here until the next filtermail accepts them\n\
         Backlog=4096\n\n[Install]\nWantedBy=sockets.target\n\
         # Enabled, the socket is required by the service (and ordered before it, as every socket\n\
         # is before its service): starting or restarting the service starts the socket first.\n\
         # The service unit stays as it was, so a relay without this socket switches with one restart.\n\
         RequiredBy=filtermail-incoming.service\n"
    );
    assert!(f["/etc/systemd/system/filtermail.socket"].contains("ListenStream=127.0.0.1:10080\n"));
    assert!(
        f["/etc/systemd/system/filtermail-transport.socket"]
            .contains("ListenStream=127.0.0.1:10083\n")
    );
    // the service unit is the one relays had before the sockets (see the socket's comment)
    assert!(!f["/etc/systemd/system/filtermail.service"].contains("socket"));
    let doveauth = &f["/etc/systemd/system/doveauth.socket"];
    assert!(doveauth.contains("ListenStream=/run/doveauth/doveauth.socket\n"));
    assert!(doveauth.contains("SocketMode=0700\n"));
    assert!(doveauth.contains("RequiredBy=doveauth.service\n"));
    let lastlogin = &f["/etc/systemd/system/lastlogin.socket"];
    assert!(lastlogin.contains("ListenStream=/run/chatmail-lastlogin/lastlogin.socket\n"));
    assert!(lastlogin.contains("SocketMode=0755\n"));
    assert!(f["/etc/systemd/system/doveauth.service"].contains("RuntimeDirectoryPreserve=yes\n"));

    // what each file restarts: the socket only for its own file
    let state = state_with(ini, false);
    let restarts = |path: &str| -> Vec<String> {
        state
            .resources
            .iter()
            .find_map(|r| match r {
                Resource::File(f) if f.path == path => Some(
                    f.notify
                        .iter()
                        .map(|n| n.unit().to_string())
                        .filter(|u| u.starts_with("filtermail"))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        restarts("/etc/systemd/system/filtermail.socket"),
        ["filtermail.socket"]
    );
    assert_eq!(
        restarts("/etc/systemd/system/filtermail.service"),
        ["filtermail.service"]
    );
    for path in [
        "/usr/local/lib/chatmaild/chatmail.ini",
        "/usr/local/bin/chatmaild",
    ] {
        assert!(
            restarts(path).iter().all(|u| u.ends_with(".service")),
            "{path}: {:?}",
            restarts(path)
        );
    }
    // sockets are enabled, never started or stopped by the deploy itself
    let socket = state
        .resources
        .iter()
        .find_map(|r| match r {
            Resource::Service(s) if s.unit == "filtermail.socket" => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((socket.enabled, socket.running), (Some(true), None));
}

mod golden;

/// A command declares what it does (the engine orders and bounds steps from that, never from
/// script text): each relay command that runs apt/dpkg or systemctl says so.
#[test]
fn every_relay_command_declares_apt_and_systemd() {
    for ini in [
        "[params]\nmail_domain = chat.example.org\nacme_email = admin@example.org\n",
        "[params]\nmail_domain = _relay-a.test\n",
        "[params]\nmail_domain = chat.example.org\ntls_external_cert_and_key = /etc/my/cert.pem /etc/my/key.pem\n",
    ] {
        let states = [release::Release::Bookworm, release::Release::Trixie]
            .map(|release| state_on(ini, false, &[], release));
        for r in states.into_iter().flat_map(|s| s.resources) {
            if let Resource::Command(c) = r {
                let apt = c.script.contains("apt-get") || c.script.contains("dpkg ");
                assert_eq!(c.runs_apt, apt, "{}: runs_apt", c.description);
                assert_eq!(
                    c.uses_systemd,
                    c.script.contains("systemctl"),
                    "{}: uses_systemd",
                    c.description
                );
            }
        }
    }
}

mod trixie;

#[test]
fn one_multi_call_binary_is_installed_and_every_program_links_to_it() {
    let state = state_with_skip("[params]\nmail_domain = _relay-a.test\n", false, &[]);
    let bin = state
        .resources
        .iter()
        .find_map(|r| match r {
            Resource::File(f) if f.path == "/usr/local/bin/chatmaild" => Some(f),
            _ => None,
        })
        .expect("the multi-call binary");
    assert_eq!(bin.mode, 0o755);
    let links: Vec<&str> = state
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::Symlink(l) if l.target == "/usr/local/bin/chatmaild" => Some(l.path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        links,
        [
            "/usr/local/bin/doveauth",
            "/usr/local/bin/chatmail-metadata",
            "/usr/local/bin/lastlogin",
            "/usr/local/bin/chatmail-expire",
            "/usr/local/bin/chatmail-fsreport",
            "/usr/local/bin/chatmail-quota-expire",
            "/usr/local/bin/filtermail",
            "/usr/lib/cgi-bin/newemail.py",
        ]
    );
    // a new binary restarts exactly the long-running units that run one of its links
    let runs_it: std::collections::BTreeSet<String> = state
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::File(f)
                if f.path.ends_with(".service")
                    && !String::from_utf8_lossy(&f.content).contains("Type=oneshot")
                    && links.iter().any(|l| {
                        String::from_utf8_lossy(&f.content).contains(&format!("ExecStart={l} "))
                    }) =>
            {
                Some(
                    f.path
                        .trim_start_matches("/etc/systemd/system/")
                        .to_string(),
                )
            }
            _ => None,
        })
        .collect();
    let restarted = bin.notify.iter().map(|n| n.unit().to_string()).collect();
    assert_eq!(runs_it.len(), 6, "{runs_it:?}");
    assert_eq!(runs_it, restarted);
    // no other program file is uploaded
    assert!(!state.resources.iter().any(|r| matches!(r,
        Resource::File(f) if f.path.starts_with("/usr/local/bin/") && f.path != "/usr/local/bin/chatmaild")));
}
