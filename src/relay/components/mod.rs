//! The relay's parts. Each file here is one or more components, and each component says once
//! what it is ([`Declaration`]): `status`, `--skip`, preflight's port check, the pinned
//! downloads and the embedded templates are all read from these declarations. build.rs
//! finds the files, so a new component is one new file here (plus its templates).

use ::chatmaild::config::Config;
use operations::State;

// what the component files use from the relay, as `super::...`
use super::{Relay, RelayOptions, context, dovecot_build, pinned, release};

pub use pinned::Pin;

/// A TCP port a component listens on, with the programs allowed to hold it.
pub type Port = (u16, &'static [&'static str]);

/// A template, compiled in: its name under templates/ and its text.
pub struct Template {
    pub name: &'static str,
    pub source: &'static str,
}

/// `templates!["postfix/main.cf.j2", ...]`: the named files under templates/, compiled in
/// (defined before the component files, so that they all see it).
macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$($crate::relay::components::Template {
            name: $name,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $name)),
        }),*]
    };
}

/// What a component is.
pub struct Declaration {
    /// Its name in `--skip` and in messages.
    pub name: &'static str,
    /// Its place in each stage's walk over the components (lower first): what one component
    /// installs, another may configure (the web root before the files nginx puts there).
    pub order: u16,
    /// May be left out with `--skip NAME`.
    pub optional: bool,
    /// Part of `run --website-only`.
    pub website: bool,
    /// The units `status` reports (those not installed on a relay are left out).
    pub units: &'static [&'static str],
    /// The ports it listens on, for the check that nobody else holds them.
    pub ports: fn(&Config) -> Vec<Port>,
    /// Third-party binaries it downloads (or takes from `--binary NAME=PATH`).
    pub pins: &'static [Pin],
    /// The templates it renders.
    pub templates: &'static [Template],
}

fn no_ports(_: &Config) -> Vec<Port> {
    Vec::new()
}

impl Declaration {
    /// A required component with no units, ports, downloads or templates: declarations
    /// say only what differs (`..Declaration::NONE`).
    pub const NONE: Declaration = Declaration {
        name: "",
        order: 0,
        optional: false,
        website: false,
        units: &[],
        ports: no_ports,
        pins: &[],
        templates: &[],
    };
}

/// One part of the relay: its declaration and its resources, stage by stage.
pub trait Component: Sync {
    fn declaration(&self) -> &'static Declaration;
    /// Whether this relay has it at all, from chatmail.ini (`--skip` is judged apart).
    fn wanted(&self, _relay: &Relay) -> bool {
        true
    }
    fn install(&self, _relay: &Relay, _s: &mut State) -> anyhow::Result<()> {
        Ok(())
    }
    fn configure(&self, _relay: &Relay, _s: &mut State) -> anyhow::Result<()> {
        Ok(())
    }
    fn activate(&self, _relay: &Relay, _s: &mut State) -> anyhow::Result<()> {
        Ok(())
    }
}

// `with_component_files!(m)` calls `m!(base, chatmaild, ...)`: the files of this directory, found
// by build.rs. The `mod` items come from the macro below, written here, so that the
// files resolve in this directory; each file lists its components as `COMPONENTS`.
include!(concat!(env!("OUT_DIR"), "/relay_component_files.rs"));

macro_rules! component_files {
    ($($file:ident),* $(,)?) => {
        $(pub(super) mod $file;)*
        fn in_files() -> Vec<&'static dyn Component> {
            let mut list = Vec::new();
            $(list.extend_from_slice($file::COMPONENTS);)*
            list
        }
    };
}
with_component_files!(component_files);

/// Components only tests build (test_only/): the proof that a new component is one file.
#[cfg(test)]
pub mod test_only {
    use super::*;

    include!(concat!(env!("OUT_DIR"), "/relay_test_component_files.rs"));
    macro_rules! test_component_files {
        ($($file:ident),* $(,)?) => {
            $(pub mod $file;)*
            pub(super) fn in_files() -> Vec<&'static dyn Component> {
                #[allow(unused_mut)]
                let mut list = Vec::new();
                $(list.extend_from_slice($file::COMPONENTS);)*
                list
            }
        };
    }
    with_test_component_files!(test_component_files);
}

/// Every component there is, in stage order.
pub fn all() -> Vec<&'static dyn Component> {
    let mut list = in_files();
    #[cfg(test)]
    list.extend(test_only::in_files());
    list.sort_by_key(|c| c.declaration().order);
    list
}

/// The components of this relay, in stage order.
pub fn of(relay: &Relay) -> Vec<&'static dyn Component> {
    let options: &RelayOptions = &relay.options;
    all()
        .into_iter()
        .filter(|c| {
            let d = c.declaration();
            if options.website_only {
                return d.website;
            }
            !(d.optional && options.skip.contains(d.name)) && c.wanted(relay)
        })
        .collect()
}

/// The names `--skip` takes.
pub fn optional() -> Vec<&'static str> {
    all()
        .iter()
        .map(|c| c.declaration())
        .filter(|d| d.optional)
        .map(|d| d.name)
        .collect()
}

/// Every unit any component runs, in stage order, for `status`.
pub fn units() -> Vec<&'static str> {
    let mut units: Vec<&str> = Vec::new();
    for c in all() {
        for unit in c.declaration().units {
            if !units.contains(unit) {
                units.push(unit);
            }
        }
    }
    units
}

/// Every port any component listens on with this chatmail.ini.
pub fn ports(config: &Config) -> Vec<Port> {
    all()
        .iter()
        .flat_map(|c| (c.declaration().ports)(config))
        .collect()
}

/// Every template any component renders.
pub fn every_template() -> impl Iterator<Item = &'static Template> {
    all().into_iter().flat_map(|c| c.declaration().templates)
}

/// The pinned download called `name` (the name `--binary NAME=PATH` takes).
pub fn pin(name: &str) -> Option<&'static Pin> {
    all()
        .into_iter()
        .flat_map(|c| c.declaration().pins)
        .find(|p| p.name == name)
}

/// The names of every pinned download.
pub fn pin_names() -> Vec<&'static str> {
    all()
        .into_iter()
        .flat_map(|c| c.declaration().pins)
        .map(|p| p.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// A template no component declares would not be compiled in; one declared twice
    /// would be two components' file.
    #[test]
    fn every_template_file_is_declared_by_one_component() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk = BTreeSet::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap();
                    on_disk.insert(rel.to_string_lossy().into_owned());
                }
            }
        }
        let declared: Vec<&str> = every_template().map(|t| t.name).collect();
        let unique: BTreeSet<String> = declared.iter().map(|n| n.to_string()).collect();
        assert_eq!(unique.len(), declared.len(), "declared twice: {declared:?}");
        assert_eq!(unique, on_disk);
    }

    #[test]
    fn names_and_places_are_unique() {
        let all = all();
        let names: BTreeSet<&str> = all.iter().map(|c| c.declaration().name).collect();
        let orders: BTreeSet<u16> = all.iter().map(|c| c.declaration().order).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(orders.len(), all.len(), "two components share a place");
        assert!(names.iter().all(|n| !n.is_empty()));
    }

    #[test]
    fn optional_components_and_pins_come_from_the_declarations() {
        for name in ["turn", "iroh-relay", "mtail"] {
            assert!(optional().contains(&name), "{name}");
        }
        assert!(!optional().contains(&"postfix"));
        assert_eq!(
            pin("iroh-relay").map(|p| p.path),
            Some("/usr/local/bin/iroh-relay")
        );
        for name in ["chatmail-turn", "iroh-relay", "mtail"] {
            assert!(pin_names().contains(&name), "{name}");
        }
    }
}
