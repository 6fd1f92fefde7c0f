//! Every config file template, compiled into the binary.

use std::path::Path;

use anyhow::{Context, bail};
use operations::Templates;

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

/// (name, source) of each file under templates/.
pub const SOURCES: &[(&str, &str)] = embedded![
    "base/00InstallRecommends",
    "systemd/journald.conf",
    "systemd/dict-service.service.j2",
    "systemd/dict-service.socket.j2",
    "systemd/oneshot.service.j2",
    "systemd/daily.timer.j2",
    "systemd/filtermail.service.j2",
    "systemd/filtermail.socket.j2",
    "unbound/chatmail.conf.j2",
    "unbound/resolv.conf",
    "acme/hook-nginx",
    "acme/responses.j2",
    "acme/target.j2",
    "acme/desired.j2",
    "acme/acmetool-redirector.service",
    "acme/acmetool-reconcile.service",
    "acme/acmetool-reconcile.timer",
    "tls/tls-cert-reload.path.j2",
    "tls/tls-cert-reload.service",
    "opendkim/opendkim.conf.j2",
    "opendkim/KeyTable.j2",
    "opendkim/SigningTable.j2",
    "opendkim/10-prevent-memory-leak.conf",
    "dovecot/dovecot.conf.j2",
    "dovecot/dovecot24.conf.j2",
    "dovecot/auth.conf",
    "dovecot/auth.lua",
    "dovecot/push_notification.lua",
    "dovecot/10_restart.conf",
    "postfix/main.cf.j2",
    "postfix/master.cf.j2",
    "postfix/submission_header_cleanup",
    "postfix/lmtp_header_cleanup",
    "postfix/smtp_tls_policy_map",
    "postfix/login_map",
    "postfix/10_restart.conf",
    "nginx/nginx.conf.j2",
    "nginx/autoconfig.xml.j2",
    "nginx/mta-sts.txt.j2",
    "iroh/iroh-relay.service",
    "iroh/iroh-relay.toml",
    "iroh/turnserver.service.j2",
    "mtail/mtail.service.j2",
    "mtail/delivered_mail.mtail",
];

/// The built-in templates; a file `DIR/NAME` in `overrides` replaces template NAME (only
/// names that exist: a typo must not go unnoticed).
pub fn load(overrides: Option<&Path>) -> anyhow::Result<Templates> {
    let mut t = Templates::new();
    for (name, source) in SOURCES {
        let own = overrides.map(|dir| dir.join(name)).filter(|p| p.is_file());
        match own {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                t.add(name, &text)?;
            }
            None => t.add(name, source)?,
        }
    }
    if let Some(dir) = overrides {
        for name in files_under(dir, dir)? {
            if !SOURCES.iter().any(|(n, _)| *n == name) {
                bail!("{}: no built-in template is called {name}", dir.display());
            }
        }
    }
    Ok(t)
}

/// Relative paths of the files under `dir`.
fn files_under(root: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files_under(root, &path)?);
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_dir_replaces_templates_of_the_same_name_only() {
        let dir = tempfile_dir("tpl-override");
        std::fs::create_dir_all(dir.join("postfix")).unwrap();
        std::fs::write(dir.join("postfix/login_map"), "own {{ 1 + 1 }}\n").unwrap();
        let t = load(Some(&dir)).unwrap();
        assert_eq!(
            t.render("postfix/login_map", serde_json::json!({}))
                .unwrap(),
            b"own 2\n"
        );
        std::fs::write(dir.join("postfix/main.cf"), "typo: no .j2\n").unwrap();
        let Err(err) = load(Some(&dir)) else {
            panic!("an unknown template name was accepted")
        };
        let err = err.to_string();
        assert!(
            err.ends_with("no built-in template is called postfix/main.cf"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
