use facts::{HostFacts, OsRelease, Package, PathKind, PathState, Unit};

use super::*;
use crate::{File, Service, State};

fn debian() -> HostFacts {
    HostFacts {
        os: OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            ..OsRelease::default()
        },
        ..HostFacts::default()
    }
}

fn file_state(content: &[u8], mode: u32) -> PathState {
    PathState {
        kind: PathKind::File,
        owner: "root".into(),
        group: "root".into(),
        mode,
        sha256: Some(sha256_hex(content)),
        link_target: None,
    }
}

fn unit(name: &str, file_state: &str, active: &str) -> Unit {
    Unit {
        name: name.into(),
        id: name.into(),
        load_state: "loaded".into(),
        active_state: active.into(),
        unit_file_state: file_state.into(),
        fragment_path: String::new(),
        ..Unit::default()
    }
}

fn web_state() -> State {
    let mut s = State::new();
    s.package("nginx").package("curl");
    s.file(File::new("/etc/nginx/sites-enabled/site", "server {}\n").reloads("nginx.service"));
    s.file(File::new("/etc/systemd/system/app.service", "[Service]\n").restarts("app.service"));
    s.service(Service::running("nginx.service"));
    s.service(Service::running("app.service"));
    s
}

#[test]
fn fresh_host_gets_one_install_and_every_change() {
    let p = plan(&web_state(), &debian()).unwrap();
    let kinds: Vec<ChangeKind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ChangeKind::Packages,
            ChangeKind::File,
            ChangeKind::File,
            ChangeKind::Service,
            ChangeKind::Service
        ]
    );
    assert_eq!(p.changes[0].description, "packages: install nginx curl");
    assert!(p.changes[1].diff.as_deref().unwrap().contains("+server {}"));
    // both services are started after their files were written: no restart, only the reload
    // of systemd for the new unit file
    let handlers: Vec<&str> = p.handlers.iter().map(|c| c.description.as_str()).collect();
    assert_eq!(handlers, vec!["systemd: daemon-reload"]);
}

#[test]
fn converged_host_has_an_empty_plan() {
    let mut f = debian();
    for name in ["nginx", "curl"] {
        f.packages.insert(
            name.into(),
            Package {
                name: name.into(),
                status: "ii".into(),
                version: "1".into(),
            },
        );
    }
    f.paths.insert(
        "/etc/nginx/sites-enabled/site".into(),
        file_state(b"server {}\n", 0o644),
    );
    f.paths.insert(
        "/etc/systemd/system/app.service".into(),
        file_state(b"[Service]\n", 0o644),
    );
    f.units.insert(
        "nginx.service".into(),
        unit("nginx.service", "enabled", "active"),
    );
    f.units.insert(
        "app.service".into(),
        unit("app.service", "enabled", "active"),
    );
    let p = plan(&web_state(), &f).unwrap();
    assert!(p.is_empty(), "{:#?}", p.changes);
    assert_eq!(p.unchanged, 6);

    // drift: changed content and a stopped service
    f.paths.insert(
        "/etc/systemd/system/app.service".into(),
        file_state(b"edited\n", 0o600),
    );
    f.units.insert(
        "app.service".into(),
        unit("app.service", "enabled", "inactive"),
    );
    let p = plan(&web_state(), &f).unwrap();
    let d: Vec<&str> = p.changes.iter().map(|c| c.description.as_str()).collect();
    assert_eq!(
        d,
        vec![
            "file /etc/systemd/system/app.service: update content, mode 600 -> 644",
            "service app.service: start (was enabled, inactive)"
        ]
    );
    assert!(
        p.changes[0].new_content.is_some(),
        "old content is fetched for the diff"
    );
    let h: Vec<&str> = p.handlers.iter().map(|c| c.description.as_str()).collect();
    assert_eq!(
        h,
        vec!["systemd: daemon-reload"],
        "started after the change: no restart"
    );

    // mode only
    f.paths.insert(
        "/etc/systemd/system/app.service".into(),
        file_state(b"[Service]\n", 0o600),
    );
    f.units.insert(
        "app.service".into(),
        unit("app.service", "enabled", "active"),
    );
    let p = plan(&web_state(), &f).unwrap();
    assert_eq!(
        p.changes[0].description,
        "file /etc/systemd/system/app.service: mode 600 -> 644"
    );
    assert_eq!(
        p.handlers.last().unwrap().description,
        "service app.service: restart"
    );
}

#[test]
fn pending_restarts_from_an_interrupted_run_are_planned() {
    let mut f = debian();
    f.reads.insert(
        restarts::PENDING_FILE.into(),
        Some("restart app.service\nreload nginx.service\n".into()),
    );
    let mut s = State::new();
    s.file(File::new("/etc/x", "x"));
    f.paths.insert("/etc/x".into(), file_state(b"x", 0o644));
    let p = plan(&s, &f).unwrap();
    assert!(p.changes.is_empty());
    let h: Vec<&str> = p.handlers.iter().map(|c| c.description.as_str()).collect();
    assert_eq!(
        h,
        vec![
            "service app.service: restart (recorded as pending on the host)",
            "service nginx.service: reload (recorded as pending on the host)"
        ]
    );
}

#[test]
fn non_debian_hosts_are_refused() {
    let mut f = debian();
    f.os.id = "fedora".into();
    f.os.pretty_name = "Fedora Linux 40".into();
    let err = plan(&State::new(), &f).unwrap_err().to_string();
    assert_eq!(
        err,
        "unsupported host: the host runs \"Fedora Linux 40\" (ID=fedora), only Debian is supported"
    );
}

#[test]
fn directories_are_never_replaced_or_removed() {
    let mut f = debian();
    f.paths.insert(
        "/var/mail".into(),
        PathState {
            kind: PathKind::Directory,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o755,
            sha256: None,
            link_target: None,
        },
    );
    let mut s = State::new();
    s.add(crate::Removed {
        path: "/var/mail".into(),
        notify: vec![],
    });
    assert!(matches!(plan(&s, &f), Err(Error::Conflict(_))));
    let mut s = State::new();
    s.file(File::new("/var/mail", "x"));
    assert!(matches!(plan(&s, &f), Err(Error::Conflict(_))));
}

#[test]
fn local_download_with_a_wrong_checksum_fails_at_plan_time() {
    let path = std::env::temp_dir().join(format!("dl-{}", std::process::id()));
    std::fs::write(&path, b"not what was pinned").unwrap();
    let mut s = State::new();
    s.add(crate::Download {
        path: "/usr/local/bin/tool".into(),
        url: "https://example.invalid/tool".into(),
        sha256: "0".repeat(64),
        extract: None,
        local: Some(path.clone()),
        owner: "root".into(),
        group: "root".into(),
        mode: 0o755,
        notify: vec![],
    });
    let err = plan(&s, &debian()).unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn duplicate_and_relative_paths_are_invalid() {
    let mut s = State::new();
    s.file(File::new("/etc/a", "1"))
        .file(File::new("/etc/a", "2"));
    assert!(matches!(plan(&s, &debian()), Err(Error::Invalid(_))));
    let mut s = State::new();
    s.file(File::new("etc/a", "1"));
    assert!(matches!(plan(&s, &debian()), Err(Error::Invalid(_))));
}

#[test]
fn users_get_missing_supplementary_groups_only() {
    let mut f = debian();
    f.users.insert(
        "postfix".into(),
        facts::User {
            name: "postfix".into(),
            uid: 100,
            gid: 100,
            home: "/var/spool/postfix".into(),
            shell: "/usr/sbin/nologin".into(),
        },
    );
    f.groups.insert(
        "opendkim".into(),
        facts::Group {
            name: "opendkim".into(),
            gid: 110,
            members: vec![],
        },
    );
    let mut s = State::new();
    let mut u = crate::User::system("postfix");
    u.groups = vec!["opendkim".into()];
    s.add(u.clone());
    let p = plan(&s, &f).unwrap();
    assert_eq!(
        p.changes[0].description,
        "system user postfix: add to opendkim"
    );
    assert!(
        p.changes[0]
            .script
            .contains("usermod -a -G opendkim postfix")
    );
    f.groups
        .get_mut("opendkim")
        .unwrap()
        .members
        .push("postfix".into());
    assert!(plan(&s, &f).unwrap().is_empty());
}

#[test]
fn a_virtual_package_to_install_is_refused_at_plan_time() {
    let mut facts = debian();
    facts
        .virtual_packages
        .insert("curl".into(), vec!["curl-real".into(), "curl-other".into()]);
    let err = plan(&web_state(), &facts).unwrap_err().to_string();
    assert_eq!(
        err,
        "package curl is virtual on this host (provided by curl-real, curl-other): the state must name the real package"
    );
}

#[test]
fn a_warning_is_in_the_plan_exactly_when_its_condition_holds() {
    let mut state = web_state();
    state.warning("test -e /fallback", "the fallback runs");
    let query = state.query();
    assert!(query.checks.contains_key("test -e /fallback"));
    let mut facts = debian();
    assert!(plan(&state, &facts).unwrap().warnings.is_empty());
    facts.checks.insert("test -e /fallback".into(), true);
    assert_eq!(
        plan(&state, &facts).unwrap().warnings,
        ["the fallback runs"]
    );
}
