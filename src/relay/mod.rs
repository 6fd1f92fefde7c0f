//! The chatmail relay as a desired state.
//!
//! Each component declares resources for three stages, walked in order over all components
//! like upstream's deployers: install (accounts, packages), configure (files), activate
//! (services). No component knows another's files.

pub mod components;
mod context;
pub mod dovecot_build;
pub mod elf;
pub mod embedded;
mod pinned;
pub mod preflight;
pub mod release;
mod templates;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use operations::State;

pub use context::Relay;

/// Deploy choices that are not in chatmail.ini.
#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    /// Stop and disable Postfix and Dovecot (first step of a migration).
    pub disable_mail: bool,
    /// `--bin-dir`: where the relay binaries for the host are; `None`: those this program
    /// carries, else the ones next to it.
    pub bin_dir: Option<PathBuf>,
    /// ACME directory URL (default: Let's Encrypt); tests point it at a local CA.
    pub acme_directory: Option<String>,
    /// Terms-of-service agreement key for acmetool's responses file.
    pub acme_agreement: Option<String>,
    /// Text for /etc/chatmail-version.
    pub version: String,
    /// The host's architecture (`uname -m`), for third-party binaries.
    pub arch: String,
    /// Operator-supplied files instead of downloads (chatmail-turn, iroh-relay, mtail).
    pub local_binaries: BTreeMap<String, PathBuf>,
    /// Components left out entirely (turn, iroh-relay, mtail), e.g. on hosts without internet.
    pub skip: BTreeSet<String>,
    /// Only the web pages (`run --website-only`).
    pub website_only: bool,
    /// Templates that replace the built-in ones of the same name (`run --templates DIR`).
    pub template_dir: Option<PathBuf>,
    /// Where chatmail's Dovecot build comes from (default: upstream's URLs and pins).
    pub dovecot_debs: dovecot_build::DovecotDebs,
}

/// The components `--skip` can leave out.
pub fn optional() -> Vec<&'static str> {
    components::optional()
}

/// The facts any host's state asks for, asked before its release is known: a fact the
/// state for the host's own release needs and the first gathering lacked would read as
/// missing and show a change on every run. A check that only some releases' states make
/// runs only on those (on 13 that spares the download probe for chatmail's Dovecot .debs);
/// elsewhere it answers no, and no state there reads it.
/// Also asks what preflight, the Dovecot choice and the binary checks read.
pub fn fact_query(relay: &Relay) -> anyhow::Result<facts::Query> {
    // one state per release (the host's own is not known yet); the relay's default release
    // is one of them, so its state needs no build of its own
    let mut query = facts::Query::default();
    let mut per_release = Vec::new();
    for release in release::ALL {
        per_release.push((
            release,
            desired_state(&relay.with_release(release))?.query(),
        ));
    }
    for (_, q) in &per_release {
        let mut q = q.clone();
        for (key, command) in q.checks.iter_mut() {
            let releases: Vec<&str> = per_release
                .iter()
                .filter(|(_, other)| other.checks.contains_key(key))
                .map(|(r, _)| r.version_id())
                .collect();
            if releases.len() < per_release.len() {
                *command = format!(
                    "case \"$(. /etc/os-release; echo \"$VERSION_ID\")\" in {}) ;; *) exit 1 ;; esac\n{command}",
                    releases.join("|")
                );
            }
        }
        query.merge(&q);
    }
    preflight::extend_query(&relay.config, &mut query);
    relay.options.dovecot_debs.extend_query(&mut query);
    elf::extend_query(&mut query);
    Ok(query)
}

/// The whole relay, stage by stage.
pub fn desired_state(relay: &Relay) -> anyhow::Result<State> {
    let parts = components::of(relay);
    let mut s = State::new();
    for c in &parts {
        c.install(relay, &mut s)?;
    }
    for c in &parts {
        c.configure(relay, &mut s)?;
    }
    for c in &parts {
        c.activate(relay, &mut s)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
