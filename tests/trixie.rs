//! A relay on a Debian 13 (trixie) test host: Debian's Dovecot 2.4 with the Lua passdb and
//! userdb asking doveauth, from the same chatmail.ini as on Debian 12.

mod common;

use common::relay::{Relay, chat_client_with_push, push_endpoint};
use common::{dns_set, enabled};

const NAME: &str = "tx-relay";
const DOMAIN: &str = "_tx-relay.test";

/// Fills the mailbox of `$1` past 75 % of its 10M quota, through dovecot-lda as mail arrives:
/// seven messages backdated by two days (quota-expire never takes mail younger than a day),
/// then two fresh ones that cross the threshold. Prints the fill messages left and the
/// quota's storage use in KiB.
const QUOTA_FILL: &str = r#"set -e
U=$1; D=/home/vmail/mail/${U#*@}/$U
fill() {
  { printf 'From: a@x\r\nTo: %s\r\nSubject: fill %s\r\nMessage-ID: <fill%s@x>\r\n\r\n' "$U" "$1" "$1"
    head -c 750000 /dev/urandom | base64; } | /usr/lib/dovecot/dovecot-lda -d "$U"
}
is_fill() { zcat -f "$1" 2>/dev/null | grep -q "^Subject: fill $2"; }
for i in 1 2 3 4 5 6 7; do fill "old$i"; done
old=$(( $(date +%s) - 2 * 86400 ))
for f in "$D"/new/* "$D"/cur/*; do
  b=$(basename "$f")
  is_fill "$f" old && mv "$f" "$(dirname "$f")/$old.${b#*.}"
done
for i in 1 2; do fill "new$i"; done
n=0; for f in "$D"/new/* "$D"/cur/*; do is_fill "$f" && n=$((n + 1)); done
echo "$n $(doveadm quota get -u "$U" | awk '$3 == "STORAGE" {print $4}')"
"#;

#[test]
fn trixie_relay_converges_passes_every_check_and_is_idempotent() {
    if !enabled("trixie_relay") {
        return;
    }
    let relay = Relay::new_trixie(NAME, DOMAIN);
    let h = &relay.host;
    let addr = h.addr.clone();
    assert_eq!(h.sh(". /etc/os-release; echo $VERSION_ID").trim(), "13");
    let (push_url, pushes) = push_endpoint();
    // a small quota, for the quota warning below
    relay.append_ini(&format!(
        "notification_url = {push_url}\nmax_mailbox_size = 10M\n"
    ));
    dns_set(&[
        &format!("{DOMAIN}. 60 IN A {addr}"),
        &format!("{DOMAIN}. 60 IN MX 10 {DOMAIN}."),
    ]);

    let first = relay.deploy(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.last_line().starts_with("summary: "),
        "{}",
        first.stdout
    );
    relay.assert_units_active("after the first run");

    // Debian's 2.4 runs, never chatmail's 2.3 set (it breaks apt on 13)
    let dovecot = h.sh("dpkg-query -W -f='${Version}' dovecot-core");
    assert!(dovecot.starts_with("1:2.4."), "{dovecot}");
    assert_eq!(
        h.sh("ls /etc/apt/preferences.d/pin-dovecot 2>/dev/null || echo none")
            .trim(),
        "none"
    );
    // the restart drop-in where 13's postfix.service reads it
    let postfix = h.sh("systemctl show -p DropInPaths -p Restart postfix.service");
    assert!(
        postfix.contains("/etc/systemd/system/postfix.service.d/10_restart.conf"),
        "{postfix}"
    );
    assert!(postfix.contains("Restart=always"), "{postfix}");
    // chatmail's capabilities are added to Dovecot's, not in their place
    let caps = h.sh(
        "printf 'a CAPABILITY\\r\\nb LOGOUT\\r\\n' | timeout 10 openssl s_client -quiet -connect 127.0.0.1:993 2>/dev/null",
    );
    for cap in ["IMAP4rev1", "IDLE", "XDELTAPUSH", "XCHATMAIL"] {
        assert!(caps.contains(cap), "{cap} missing: {caps}");
    }

    // every check of the operator's test command
    let (code, report) = relay.operator_test();
    assert_eq!(code, Some(0), "{report}");
    let summary = report.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("test: ") && !summary.contains("failed"),
        "{summary}"
    );

    // the Delta Chat client: /new account, login-created account, encrypted both ways,
    // cleartext refused, and the device token (METADATA) pushed on new mail
    let bob = chat_client_with_push(&relay, DOMAIN, &pushes, "trixie-device-token");
    let bob = bob.as_str();
    // last_login through lastlogin: the password file's mtime is the login's day
    let mtime: i64 = h
        .sh(&format!(
            "stat -c %Y /home/vmail/mail/{DOMAIN}/{bob}/password"
        ))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(mtime % 86_400, 0, "mtime {mtime} is not a day start");
    // the quota warning at 75 % runs quota-expire, which takes the oldest mail down to 70 %
    let fill = h.sh(&format!("bash -s {bob} <<'EOF'\n{QUOTA_FILL}EOF"));
    let (left, kib) = fill.trim().split_once(' ').unwrap();
    let (left, kib): (u32, u64) = (left.parse().unwrap(), kib.parse().unwrap());
    assert!(left < 9 && kib <= 7 * 1024, "after the fill: {fill}");
    let log =
        h.sh("journalctl -u dovecot -o cat --no-pager | grep 'quota-expire: removed' || true");
    assert!(log.contains(bob), "{log}");
    // failed logins (the test command tried one) do not log anvil or Lua errors
    let errors =
        h.sh("journalctl -u dovecot -p warning -o cat --no-pager | grep -v quota-expire || true");
    assert!(
        !errors.contains("anvil") && !errors.to_lowercase().contains("lua"),
        "{errors}"
    );

    relay.assert_rerun_changes_nothing();
}
