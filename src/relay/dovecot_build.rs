//! Which Dovecot: chatmail's build (2.3.21+dfsg1-3, without the fixed 0.5 s wait before an
//! idle client hears of new mail) where it can be downloaded, Debian's otherwise. Decided
//! once, when Dovecot is first installed.

use operations::{Command, Guard};

const VERSION_FILE: &str = "2.3.21%2Bdfsg1-3";
const PRIMARY: &str = "https://download.delta.chat/dovecot";
const FALLBACK: &str =
    "https://github.com/chatmail/dovecot/releases/download/upstream%2F2.3.21%2Bdfsg1-3";

/// (dpkg arch, package, sha256 of the .deb)
const DEBS: &[(&str, &str, &str)] = &[
    (
        "amd64",
        "core",
        "dd060706f52a306fa863d874717210b9fe10536c824afe1790eec247ded5b27d",
    ),
    (
        "amd64",
        "imapd",
        "8d8dc6fc00bbb6cdb25d345844f41ce2f1c53f764b79a838eb2a03103eebfa86",
    ),
    (
        "amd64",
        "lmtpd",
        "2f69ba5e35363de50962d42cccbfe4ed8495265044e244007d7ccddad77513ab",
    ),
    (
        "arm64",
        "core",
        "e7548e8a82929722e973629ecc40fcfa886894cef3db88f23535149e7f730dc9",
    ),
    (
        "arm64",
        "imapd",
        "178fa877ddd5df9930e8308b518f4b07df10e759050725f8217a0c1fb3fd707f",
    ),
    (
        "arm64",
        "lmtpd",
        "89f52fb36524f5877a177dff4a713ba771fd3f91f22ed0af7238d495e143b38f",
    ),
];

pub fn install() -> Command {
    let sums: String = DEBS
        .iter()
        .map(|(arch, pkg, sha)| format!("{arch}:{pkg}) echo {sha} ;;\n"))
        .collect();
    let script = format!(
        r#"set -e
export DEBIAN_FRONTEND=noninteractive
arch=$(dpkg --print-architecture)
sha_of() {{ case "$arch:$1" in
{sums}*) echo ;; esac; }}
fetched=1
for pkg in core imapd lmtpd; do
  sha=$(sha_of $pkg); f=/root/dovecot-${{pkg}}_{VERSION_FILE}_$arch.deb
  [ -n "$sha" ] || {{ fetched=; break; }}
  if ! echo "$sha  $f" | sha256sum -c --quiet 2>/dev/null; then
    name=$(basename "$f")
    curl -fsSL --connect-timeout 10 -o "$f.tmp" "{PRIMARY}/$name" 2>/dev/null ||
      curl -fsSL --connect-timeout 10 -o "$f.tmp" "{FALLBACK}/$name" 2>/dev/null || {{ fetched=; rm -f "$f.tmp"; break; }}
    echo "$sha  $f.tmp" | sha256sum -c --quiet || {{ fetched=; rm -f "$f.tmp"; break; }}
    mv -f "$f.tmp" "$f"
  fi
done
created=
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created=1; fi
trap '[ -z "$created" ] || rm -f /usr/sbin/policy-rc.d' EXIT
if [ -n "$fetched" ]; then
  debs="/root/dovecot-core_{VERSION_FILE}_$arch.deb /root/dovecot-imapd_{VERSION_FILE}_$arch.deb /root/dovecot-lmtpd_{VERSION_FILE}_$arch.deb"
  dpkg --force-confdef --force-confold -i $debs >/dev/null 2>&1 || true
  apt-get -q -y -o DPkg::Lock::Timeout=600 --fix-broken install
  dpkg --force-confdef --force-confold -i $debs
  # apt must never replace it with Debian's
  printf 'Package: dovecot-*\nPin: version *\nPin-Priority: -1\n' > /etc/apt/preferences.d/pin-dovecot
  echo "installed chatmail's Dovecot build"
else
  apt-get -q -y -o DPkg::Lock::Timeout=600 install dovecot-core dovecot-imapd dovecot-lmtpd
  echo "warning: chatmail's Dovecot build cannot be downloaded here: installed Debian's Dovecot (new mail reaches idle clients 0.5 s later)" >&2
fi
"#
    );
    Command {
        description: "dovecot: install chatmail's build, or Debian's where it cannot be downloaded"
            .into(),
        script,
        guard: Guard::Unless(
            "dpkg-query -W -f='${Status}' dovecot-core 2>/dev/null | grep -q 'ok installed'".into(),
        ),
        notify: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_is_valid_shell_with_both_sources_and_the_fallback() {
        let script = install().script;
        assert!(script.contains("https://download.delta.chat/dovecot/$name"));
        assert!(script.contains("releases/download/upstream%2F2.3.21%2Bdfsg1-3/$name"));
        assert!(script.contains("amd64:core) echo dd060706"));
        assert!(script.contains("install dovecot-core dovecot-imapd dovecot-lmtpd"));
        let check = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(check.success(), "{script}");
    }
}
