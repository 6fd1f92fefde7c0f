//! System resource gate for creating new accounts (load, memory, disk).
//!
//! Existing accounts are never affected; this only stops registrations while the machine
//! is struggling. Values that cannot be read are skipped rather than blocking sign-ups.

use std::path::Path;

use crate::config::Config;

const MIB: u64 = 1024 * 1024;

/// One snapshot of the values the gate looks at; `None` = could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readings {
    pub load_1m: Option<f64>,
    pub available_memory_mb: Option<u64>,
    pub free_disk_mb: Option<u64>,
}

impl Readings {
    /// Read the current values from `/proc` and `statvfs(mailboxes_dir)`.
    pub fn current(mailboxes_dir: &Path) -> Readings {
        Readings {
            load_1m: readable("load average", read_load_1m()),
            available_memory_mb: readable("available memory", read_available_memory_mb()),
            free_disk_mb: readable("free disk space", read_free_disk_mb(mailboxes_dir)),
        }
    }
}

fn readable<T>(what: &str, value: Result<T, String>) -> Option<T> {
    value
        .map_err(|e| log::warn!("ignoring unreadable system limit: {what}: {e}"))
        .ok()
}

fn read_load_1m() -> Result<f64, String> {
    let text = std::fs::read_to_string("/proc/loadavg").map_err(|e| e.to_string())?;
    parse_loadavg(&text).ok_or_else(|| format!("unexpected /proc/loadavg content {text:?}"))
}

fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

fn read_available_memory_mb() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    parse_mem_available_mb(&text).ok_or_else(|| "no MemAvailable in /proc/meminfo".into())
}

/// `MemAvailable` is the kernel's estimate of memory usable without swapping.
fn parse_mem_available_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024 / MIB)
}

fn read_free_disk_mb(dir: &Path) -> Result<u64, String> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Space available to unprivileged users, like `df` shows.
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64 / MIB)
}

/// Why registrations are refused right now, or `None` if they are allowed.
/// Checked in order load, memory, disk; the first violation wins.
pub fn rejection_reason(config: &Config, r: &Readings) -> Option<String> {
    if let Some(load) = r.load_1m.filter(|&l| l > config.max_load_1m) {
        return Some(format!("load avg {load:.2} > {:.2}", config.max_load_1m));
    }
    if let Some(mem) = r
        .available_memory_mb
        .filter(|&m| m < config.min_available_memory_mb)
    {
        return Some(format!(
            "available memory {mem}MB < {}MB",
            config.min_available_memory_mb
        ));
    }
    if let Some(disk) = r
        .free_disk_mb
        .filter(|&d| d < config.min_free_disk_space_mb)
    {
        return Some(format!(
            "free disk {disk}MB < {}MB",
            config.min_free_disk_space_mb
        ));
    }
    None
}

/// Gate used before creating an account; logs the line mtail counts when refusing.
pub fn has_sufficient_resources(config: &Config) -> bool {
    let readings = Readings::current(&config.mailboxes_dir);
    match rejection_reason(config, &readings) {
        None => true,
        Some(reason) => {
            log::warn!("registration rejected: {reason}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[params]\nmail_domain = x.org\nmax_load_1m = 5\nmin_available_memory = 200M\n\
             min_free_disk_space = 1G\n",
            "t.ini",
        )
        .unwrap()
    }

    fn readings(load: f64, mem: u64, disk: u64) -> Readings {
        Readings {
            load_1m: Some(load),
            available_memory_mb: Some(mem),
            free_disk_mb: Some(disk),
        }
    }

    #[test]
    fn all_fine() {
        assert_eq!(rejection_reason(&config(), &readings(5.0, 200, 1024)), None);
        assert_eq!(rejection_reason(&config(), &Readings::default()), None);
    }

    #[test]
    fn messages_and_order() {
        let c = config();
        assert_eq!(
            rejection_reason(&c, &readings(7.123, 10, 10)).unwrap(),
            "load avg 7.12 > 5.00"
        );
        assert_eq!(
            rejection_reason(&c, &readings(1.0, 150, 10)).unwrap(),
            "available memory 150MB < 200MB"
        );
        assert_eq!(
            rejection_reason(&c, &readings(1.0, 300, 800)).unwrap(),
            "free disk 800MB < 1024MB"
        );
    }

    #[test]
    fn unreadable_values_are_skipped() {
        let c = config();
        let r = Readings {
            load_1m: None,
            available_memory_mb: None,
            free_disk_mb: Some(10),
        };
        assert_eq!(rejection_reason(&c, &r).unwrap(), "free disk 10MB < 1024MB");
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_loadavg("0.52 0.58 0.59 1/389 12345\n"), Some(0.52));
        assert_eq!(parse_loadavg(""), None);
        let meminfo =
            "MemTotal:       16318540 kB\nMemFree:  1000 kB\nMemAvailable:   2048000 kB\n";
        assert_eq!(parse_mem_available_mb(meminfo), Some(2000));
        assert_eq!(parse_mem_available_mb("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn reads_this_machine() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Readings::current(tmp.path());
        assert!(r.load_1m.is_some());
        assert!(r.available_memory_mb.is_some_and(|m| m > 0));
        assert!(r.free_disk_mb.is_some());
        let missing = Readings::current(&tmp.path().join("missing"));
        assert_eq!(missing.free_disk_mb, None);
    }
}
