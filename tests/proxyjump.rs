//! Deploying through a jump host: the target's sshd answers only the jump host (an nft rule
//! on the target), and `run` reaches it through a `~/.ssh/config` alias with ProxyJump.

mod common;

use common::{TestHost, enabled, example, http_get, known_hosts, run, ssh_env};

/// Port 22 of the target accepts the jump host's address only; others get a TCP reset.
fn only_from(jump_addr: &str) -> String {
    format!(
        "nft -f - <<'EOF'
table inet pj_only_from_jump {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport 22 ip saddr {jump_addr} accept
    tcp dport 22 reject with tcp reset
  }}
}}
EOF"
    )
}

/// A home directory whose `~/.ssh/config` pulls the aliases in through Include.
fn ssh_home(jump: &str, target: &str) -> std::path::PathBuf {
    let home = std::env::temp_dir().join(format!("pj-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join(".ssh/config.d")).unwrap();
    std::fs::write(home.join(".ssh/config"), "Include config.d/*.conf\n").unwrap();
    let key = &ssh_env()["TESTHOST_KEY"];
    std::fs::write(
        home.join(".ssh/config.d/relays.conf"),
        format!(
            "Host relay-via-jump\n  HostName {target}\n  ProxyJump bastion\n\n\
             Host relay-bad-jump\n  HostName {target}\n  ProxyJump root@{jump}:2\n\n\
             Host bastion\n  HostName {jump}\n  User root\n\n\
             Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        ),
    )
    .unwrap();
    home
}

#[test]
fn deploy_through_a_jump_host_converges() {
    if !enabled("deploy_through_a_jump_host_converges") {
        return;
    }
    let jump = TestHost::up("pj-jump");
    let target = TestHost::up("pj-target");
    target.sh(
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null",
    );
    target.nsexec(&only_from(&jump.addr));
    let home = ssh_home(&jump.addr, &target.addr);
    let home_env = [("HOME", home.to_str().unwrap())];
    let webhost = example("webhost");
    let kh = known_hosts();
    let deploy_to = |host: &str, env: &[(&str, &str)]| {
        run(&webhost, &["--ssh-host", host, "--known-hosts", &kh], env)
    };

    let direct = deploy_to(&target.addr, &home_env);
    assert!(
        direct
            .one_error_line()
            .starts_with(&format!("error: cannot connect to root@{}: ", target.addr)),
        "the firewall keeps a direct connection out: {}",
        direct.stderr
    );

    let first = deploy_to("relay-via-jump", &home_env);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stdout.contains("changed: packages: install nginx"));
    assert!(http_get(&target.addr, 80, "/").contains("Deployed by chatmail-deploy."));

    // no ssh-agent this time: IdentityFile's key is used from the file, on both hops
    let second = deploy_to("relay-via-jump", &[home_env[0], ("SSH_AUTH_SOCK", "")]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.last_line().starts_with("summary: 0 changed,"),
        "{}",
        second.last_line()
    );

    let bad = deploy_to("relay-bad-jump", &home_env);
    let line = bad.one_error_line();
    assert!(
        line.starts_with(&format!(
            "error: cannot connect to jump host root@{0}:2: ",
            jump.addr
        )) && line.contains("refused"),
        "{line}"
    );
    assert_ne!(bad.code, 0);
    std::fs::remove_dir_all(home).unwrap();
}
