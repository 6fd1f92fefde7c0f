//! Which Dovecot: chatmail's build (without Debian's fixed 0.5 s wait before an idle client
//! hears of new mail) where its .debs can be downloaded, Debian's otherwise.
//!
//! The choice is made from facts on every run, so a relay that had to fall back to Debian's
//! build gets chatmail's on the first run that can download it, and says so until then.

use anyhow::{Context, bail};
use operations::{Command, Guard, State};

/// Where chatmail's build comes from: base URLs (tried in order) and the sha256 of every .deb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotDebs {
    pub urls: Vec<String>,
    /// Debian version without epoch, e.g. `2.3.21+dfsg1-3`.
    pub version: String,
    pub debs: Vec<Deb>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    /// dpkg architecture, e.g. `amd64`.
    pub arch: String,
    /// `core`, `imapd` or `lmtpd`.
    pub package: String,
    pub sha256: String,
}

const PACKAGES: [&str; 3] = ["core", "imapd", "lmtpd"];

/// Upstream's set: `(dpkg arch, package, sha256)`.
const UPSTREAM_PINS: &[(&str, &str, &str)] = &[
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

impl Default for DovecotDebs {
    /// Upstream's URLs and pins.
    fn default() -> Self {
        DovecotDebs {
            urls: vec![
                "https://download.delta.chat/dovecot".into(),
                "https://github.com/chatmail/dovecot/releases/download/upstream%2F2.3.21%2Bdfsg1-3"
                    .into(),
            ],
            version: "2.3.21+dfsg1-3".into(),
            debs: UPSTREAM_PINS
                .iter()
                .map(|(arch, package, sha256)| Deb {
                    arch: (*arch).into(),
                    package: (*package).into(),
                    sha256: (*sha256).into(),
                })
                .collect(),
        }
    }
}

impl DovecotDebs {
    /// A set served at `url`, pinned by `pins` in `sha256sum` format
    /// (`<sha256>  dovecot-core_<version>_<arch>.deb`). Other files in it are ignored; every
    /// architecture listed must have all three packages, all of one version.
    pub fn from_pins(url: &str, pins: &str) -> anyhow::Result<DovecotDebs> {
        let mut version: Option<String> = None;
        let mut debs = Vec::new();
        for line in pins.lines().filter(|l| !l.trim().is_empty()) {
            let (sha, file) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("not a sha256sum line: {line:?}"))?;
            let file = file.trim().trim_start_matches('*');
            let Some(rest) = file.strip_prefix("dovecot-") else {
                continue;
            };
            let Some((package, rest)) = rest.split_once('_') else {
                continue;
            };
            if !PACKAGES.contains(&package) {
                continue;
            }
            let Some((v, arch)) = rest.strip_suffix(".deb").and_then(|r| r.rsplit_once('_')) else {
                bail!("{file}: expected dovecot-{package}_<version>_<arch>.deb");
            };
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{file}: {sha:?} is not a sha256");
            }
            match &version {
                Some(known) if known != v => {
                    bail!("{file}: version {v}, the other packages are {known}")
                }
                _ => version = Some(v.to_string()),
            }
            debs.push(Deb {
                arch: arch.into(),
                package: package.into(),
                sha256: sha.to_ascii_lowercase(),
            });
        }
        let version = version.context("no dovecot-core/imapd/lmtpd .deb listed")?;
        for deb in &debs {
            for package in PACKAGES {
                if !debs
                    .iter()
                    .any(|d| d.arch == deb.arch && d.package == package)
                {
                    bail!("no dovecot-{package} for {} listed", deb.arch);
                }
            }
        }
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("{url}: expected an http:// or https:// URL");
        }
        Ok(DovecotDebs {
            urls: vec![url.into()],
            version,
            debs,
        })
    }

    fn file(&self, package: &str) -> String {
        format!("dovecot-{package}_{}_$arch.deb", self.version)
    }

    /// The shell test: dovecot-core of this version is installed (any epoch).
    fn installed_check(&self) -> String {
        format!(
            "dpkg-query -W -f='${{Status}} ${{Version}}' dovecot-core 2>/dev/null | \
             sed 's/ [0-9]*:/ /' | grep -qx 'install ok installed {}'",
            self.version
        )
    }

    /// The guard of the install: not installed yet, and the .debs can be had.
    fn install_guard(&self) -> String {
        format!(
            "! {{ {}; }} && {{ {}; }}",
            self.installed_check(),
            self.fetchable_check()
        )
    }

    /// Adds what [`DovecotDebs::runs_after_this_run`] needs beyond the state's own query.
    pub fn extend_query(&self, q: &mut facts::Query) {
        let installed = self.installed_check();
        q.checks.insert(installed.clone(), installed);
    }

    /// Whether chatmail's build runs on the host once this run is done: it is installed, or
    /// the run installs it (the facts hold both guards' answers).
    pub fn runs_after_this_run(&self, facts: &facts::HostFacts) -> bool {
        let answer = |check: String| facts.checks.get(&check).copied().unwrap_or(false);
        answer(self.installed_check()) || answer(self.install_guard())
    }

    /// The shell test: every .deb for this host is in /root with its pin, or the first one
    /// can be reached at one of the URLs.
    fn fetchable_check(&self) -> String {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|u| {
                format!(
                    "curl -fsI --connect-timeout 5 --max-time 10 -o /dev/null {}/{}",
                    shell_word(u),
                    url_file(&self.file("core"))
                )
            })
            .collect();
        format!(
            "arch=$(dpkg --print-architecture); {pins}\n\
             ok=1; for p in {packages}; do sha=$(pin $p); if [ -z \"$sha\" ]; then ok=none; break; fi; \
             echo \"$sha  /root/{file}\" | sha256sum -c --quiet >/dev/null 2>&1 || ok=; done\n\
             [ \"$ok\" != none ] && {{ [ -n \"$ok\" ] || {urls}; }}",
            pins = self.pin_function(),
            packages = PACKAGES.join(" "),
            file = self.file("${p}"),
            urls = urls.join(" || "),
        )
    }

    /// A shell function `pin PACKAGE` printing the sha256 for `$arch` (empty if none).
    fn pin_function(&self) -> String {
        let cases: String = self
            .debs
            .iter()
            .map(|d| format!("{}:{}) echo {} ;; ", d.arch, d.package, d.sha256))
            .collect();
        format!("pin() {{ case \"$arch:$1\" in {cases}*) echo ;; esac; }}")
    }

    /// Downloads what is not in /root yet, refuses a .deb whose sha256 is not its pin before
    /// dpkg sees it, and installs the set the way upstream does (dpkg -i, fix-broken, dpkg -i).
    fn install_script(&self) -> String {
        let downloads: String = self
            .urls
            .iter()
            .map(|u| {
                format!(
                    "curl -fsS --connect-timeout 10 --max-time 600 -o \"$f.tmp\" {}/\"$name\" 2>>\"$errors\" || ",
                    shell_word(u)
                )
            })
            .collect();
        format!(
            r#"set -e
{apt}arch=$(dpkg --print-architecture)
{pins}
errors=$chatmail_apt_log.curl
debs=
for p in {packages}; do
  sha=$(pin $p)
  [ -n "$sha" ] || {{ echo "chatmail's Dovecot build has no .deb for $arch" >&2; exit 1; }}
  f=/root/{file}; debs="$debs $f"
  echo "$sha  $f" | sha256sum -c --quiet >/dev/null 2>&1 && continue
  name=$(printf '%s' "$(basename "$f")" | sed 's/+/%2B/g')
  {downloads}{{ echo "cannot download $name: $(tail -n 1 "$errors")" >&2; rm -f "$f.tmp"; exit 1; }}
  got=$(sha256sum "$f.tmp" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    rm -f "$f.tmp"; echo "$(basename "$f"): sha256 is $got, expected $sha: not installed" >&2; exit 1
  fi
  mv -f "$f.tmp" "$f"
done
chatmail_no_daemon_starts
dpkg --force-confdef --force-confold -i $debs >/dev/null 2>&1 || true
chatmail_apt_fresh
chatmail_apt_get --fix-broken install
dpkg --force-confdef --force-confold -i $debs
# apt must never replace it with Debian's (written only now: with the pin in place,
# --fix-broken above left the set unconfigured on Debian 12, measured)
printf 'Package: dovecot-*\nPin: version *\nPin-Priority: -1\n' > /etc/apt/preferences.d/pin-dovecot
"#,
            apt = operations::apt::functions(),
            pins = self.pin_function(),
            packages = PACKAGES.join(" "),
            file = self.file("${p}"),
        )
    }
}

fn shell_word(s: &str) -> String {
    facts::shell::quote(s)
}

fn url_file(file: &str) -> String {
    file.replace('+', "%2B")
}

/// The Dovecot packages: chatmail's build when it can be had, Debian's when it cannot (and
/// a warning on every run while Debian's runs).
pub fn add(debs: &DovecotDebs, s: &mut State) {
    let installed = debs.installed_check();
    let fetchable = debs.fetchable_check();
    s.add(
        Command::new(
            format!(
                "dovecot: install chatmail's build {} from {}",
                debs.version,
                debs.urls.join(" or ")
            ),
            debs.install_script(),
            Guard::OnlyIf(debs.install_guard()),
        )
        .runs_apt(),
    );
    s.add(
        Command::new(
            "dovecot: install Debian's Dovecot (chatmail's build cannot be downloaded)",
            format!(
                // a pin left from an earlier chatmail build would forbid Debian's packages
                "set -e\n{}chatmail_no_daemon_starts\nrm -f /etc/apt/preferences.d/pin-dovecot\nchatmail_apt_fresh\nchatmail_apt_install dovecot-core dovecot-imapd dovecot-lmtpd",
                operations::apt::functions()
            ),
            Guard::OnlyIf(format!(
                "! dpkg-query -W -f='${{Status}}' dovecot-core 2>/dev/null | grep -q 'ok installed' && ! {{ {fetchable}; }}"
            )),
        )
        .runs_apt(),
    );
    s.warning(
        &format!("! {{ {installed}; }} && ! {{ {fetchable}; }}"),
        &format!(
            "chatmail's Dovecot build {} cannot be downloaded from {}: Debian's Dovecot runs (new mail reaches idle clients 0.5 s later); every run tries again",
            debs.version,
            debs.urls.join(" or ")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_shell(script: &str) {
        let check = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap();
        assert!(check.success(), "{script}");
    }

    #[test]
    fn every_script_and_check_is_valid_shell() {
        let mut s = State::new();
        add(&DovecotDebs::default(), &mut s);
        for r in &s.resources {
            let operations::Resource::Command(c) = r else {
                panic!()
            };
            valid_shell(&c.script);
            let (Guard::OnlyIf(check) | Guard::Unless(check) | Guard::Creates(check)) = &c.guard;
            valid_shell(check);
        }
        valid_shell(&s.warnings[0].0);
        let script = DovecotDebs::default().install_script();
        assert!(script.contains("https://download.delta.chat/dovecot/\"$name\""));
        assert!(script.contains("amd64:core) echo dd060706"));
        assert!(script.contains("f=/root/dovecot-${p}_2.3.21+dfsg1-3_$arch.deb;"));
    }

    /// The check runs against this machine's dpkg: Debian 12's dovecot-core (if installed
    /// here) is not chatmail's build, and an unreachable URL is not fetchable.
    #[test]
    fn checks_run_in_a_real_shell() {
        let debs = DovecotDebs {
            urls: vec!["http://127.0.0.1:9".into()],
            ..DovecotDebs::default()
        };
        let run = |script: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .status()
                .unwrap()
                .success()
        };
        assert!(!run(&debs.installed_check()));
        assert!(!run(&debs.fetchable_check()));
        let other = DovecotDebs {
            version: "0.0".into(),
            ..debs.clone()
        };
        assert!(!run(&other.installed_check()));
    }

    #[test]
    fn the_build_that_runs_after_the_run_follows_the_facts() {
        let debs = DovecotDebs::default();
        let mut q = facts::Query::default();
        debs.extend_query(&mut q);
        let mut s = State::new();
        add(&debs, &mut s);
        q.checks.extend(s.query().checks);
        let mut facts = facts::HostFacts::default();
        for check in q.checks.keys() {
            facts.checks.insert(check.clone(), false);
        }
        assert!(!debs.runs_after_this_run(&facts), "Debian's build stays");
        facts.checks.insert(debs.install_guard(), true);
        assert!(debs.runs_after_this_run(&facts), "this run installs it");
        facts.checks.insert(debs.install_guard(), false);
        facts.checks.insert(debs.installed_check(), true);
        assert!(debs.runs_after_this_run(&facts), "installed");
    }

    #[test]
    fn pins_files_name_version_architectures_and_sums() {
        let sha = "a".repeat(64);
        let pins = format!(
            "{sha}  dovecot-core_2.3.21+dfsg1-3_amd64.deb\n{sha}  dovecot-imapd_2.3.21+dfsg1-3_amd64.deb\n\
             {sha} *dovecot-lmtpd_2.3.21+dfsg1-3_amd64.deb\n{sha}  dovecot-dev_2.3.21+dfsg1-3_amd64.deb\n"
        );
        let debs = DovecotDebs::from_pins("http://10.77.0.1:8077/bookworm/", &pins).unwrap();
        assert_eq!(debs.version, "2.3.21+dfsg1-3");
        assert_eq!(debs.urls, ["http://10.77.0.1:8077/bookworm"]);
        assert_eq!(debs.debs.len(), 3);
        assert!(debs.debs.iter().all(|d| d.arch == "amd64"));

        let missing = format!("{sha}  dovecot-core_1_amd64.deb\n");
        assert_eq!(
            DovecotDebs::from_pins("http://x", &missing)
                .unwrap_err()
                .to_string(),
            "no dovecot-imapd for amd64 listed"
        );
        let mixed = format!("{sha}  dovecot-core_1_amd64.deb\n{sha}  dovecot-imapd_2_amd64.deb\n");
        assert_eq!(
            DovecotDebs::from_pins("http://x", &mixed)
                .unwrap_err()
                .to_string(),
            "dovecot-imapd_2_amd64.deb: version 2, the other packages are 1"
        );
        assert!(DovecotDebs::from_pins("http://x", "").is_err());
        assert!(DovecotDebs::from_pins("/srv/debs", &pins).is_err());
    }
}
