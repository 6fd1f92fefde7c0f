//! systemd socket activation (sd_listen_fds(3)): listening sockets a `.socket` unit holds
//! and passes to the service as fds 3, 4, ... (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`).
//!
//! The socket outlives the service, so while the service restarts, new connections wait
//! in the kernel's accept queue instead of being refused. A service started without them
//! (a manual start, a test) binds its addresses itself.
//!
//! A passed socket is matched to what the service wants by its bound address, not by its
//! position or name, so a port changed in chatmail.ini but not yet in the socket unit is
//! bound by the service itself instead of being served on the old port.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::Path;

/// The first passed fd (after stdin, stdout, stderr).
pub const FIRST_FD: RawFd = 3;

/// More than any unit of ours passes; a larger count is a broken environment.
const MAX_FDS: usize = 64;

/// One passed fd and its `FileDescriptorName=` (`unknown` when systemd gave none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedFd {
    pub fd: RawFd,
    pub name: String,
}

/// The fds passed to this process, each taken at most once.
#[derive(Debug, Default)]
pub struct Passed {
    fds: Vec<PassedFd>,
}

/// Read the three variables as systemd sets them for process `pid`. Variables meant for
/// another process (a parent that did not clear them) or absent mean no fds.
pub fn parse(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
) -> Result<Vec<PassedFd>, String> {
    let (Some(listen_pid), Some(listen_fds)) = (listen_pid, listen_fds) else {
        return Ok(Vec::new());
    };
    let for_pid: u32 = listen_pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={listen_pid:?} is not a process id"))?;
    if for_pid != pid {
        return Ok(Vec::new());
    }
    let count: usize = listen_fds
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={listen_fds:?} is not a number"))?;
    if count > MAX_FDS {
        return Err(format!("LISTEN_FDS={count} is more than {MAX_FDS}"));
    }
    let names: Vec<&str> = listen_fdnames.map_or_else(Vec::new, |n| n.split(':').collect());
    // sd_listen_fds_with_names(3) rejects a name list of the wrong length; the names only
    // label log lines here, so they are dropped instead.
    let names_fit = names.len() == count;
    Ok((0..count)
        .map(|i| PassedFd {
            fd: FIRST_FD + i as RawFd,
            name: if names_fit { names[i] } else { "unknown" }.to_owned(),
        })
        .collect())
}

impl Passed {
    /// The fds systemd passed to this process.
    pub fn from_env() -> Result<Passed, String> {
        let var = |k: &str| std::env::var(k).ok();
        let fds = parse(
            std::process::id(),
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
        )?;
        Ok(Passed { fds })
    }

    /// For tests: these fds as if systemd had passed them.
    pub fn from_fds(fds: Vec<PassedFd>) -> Passed {
        Passed { fds }
    }

    /// The passed TCP listening socket bound to `addr`, if there is one.
    pub fn take_tcp(&mut self, addr: SocketAddr) -> Option<(std::net::TcpListener, String)> {
        self.take(|fd| {
            // SAFETY: the fd was passed to this process and is not used elsewhere; if it
            // is not the one wanted, ownership goes back to `fds` via into_raw_fd.
            #[allow(unsafe_code)]
            let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            if listener.local_addr().ok() == Some(addr) {
                Ok(listener)
            } else {
                Err(listener.into_raw_fd())
            }
        })
    }

    /// The passed unix listening socket bound to `path`, if there is one.
    pub fn take_unix(&mut self, path: &Path) -> Option<(std::os::unix::net::UnixListener, String)> {
        self.take(|fd| {
            // SAFETY: as in take_tcp.
            #[allow(unsafe_code)]
            let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
            let bound = listener.local_addr().ok();
            if bound.as_ref().and_then(|a| a.as_pathname()) == Some(path) {
                Ok(listener)
            } else {
                Err(listener.into_raw_fd())
            }
        })
    }

    fn take<T>(&mut self, matches: impl Fn(RawFd) -> Result<T, RawFd>) -> Option<(T, String)> {
        for i in 0..self.fds.len() {
            if let Ok(found) = matches(self.fds[i].fd) {
                let passed = self.fds.remove(i);
                return Some((found, passed.name));
            }
        }
        None
    }

    /// Names of the fds nothing took (a socket unit listening where the config does not).
    pub fn unused(&self) -> Vec<String> {
        self.fds
            .iter()
            .map(|p| format!("{} (fd {})", p.name, p.fd))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(list: &[(RawFd, &str)]) -> Vec<PassedFd> {
        list.iter()
            .map(|(fd, name)| PassedFd {
                fd: *fd,
                name: name.to_string(),
            })
            .collect()
    }

    #[test]
    fn fds_for_this_process_with_names() {
        assert_eq!(
            parse(42, Some("42"), Some("2"), Some("smtp:http")).unwrap(),
            fds(&[(3, "smtp"), (4, "http")])
        );
        // names that do not fit the count are dropped, the fds kept
        assert_eq!(
            parse(42, Some("42"), Some("2"), Some("smtp")).unwrap(),
            fds(&[(3, "unknown"), (4, "unknown")])
        );
        assert_eq!(
            parse(42, Some("42"), Some("1"), None).unwrap(),
            fds(&[(3, "unknown")])
        );
        assert_eq!(parse(42, Some("42"), Some("0"), None).unwrap(), vec![]);
    }

    #[test]
    fn fds_for_another_process_or_none_are_ignored() {
        assert_eq!(parse(42, Some("41"), Some("2"), None).unwrap(), vec![]);
        assert_eq!(parse(42, None, Some("2"), None).unwrap(), vec![]);
        assert_eq!(parse(42, Some("42"), None, None).unwrap(), vec![]);
    }

    #[test]
    fn broken_variables_are_one_line_errors() {
        for (pid, count, want) in [
            ("x", "1", "LISTEN_PID=\"x\" is not a process id"),
            ("42", "two", "LISTEN_FDS=\"two\" is not a number"),
            ("42", "-1", "LISTEN_FDS=\"-1\" is not a number"),
            ("42", "100000", "LISTEN_FDS=100000 is more than 64"),
        ] {
            assert_eq!(parse(42, Some(pid), Some(count), None).unwrap_err(), want);
        }
    }

    #[test]
    fn passed_sockets_are_matched_by_address() {
        use std::os::fd::IntoRawFd;
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (addr_a, addr_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("dict.socket");
        let u = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let mut passed = Passed::from_fds(vec![
            PassedFd {
                fd: u.into_raw_fd(),
                name: "dict".into(),
            },
            PassedFd {
                fd: a.into_raw_fd(),
                name: "a".into(),
            },
            PassedFd {
                fd: b.into_raw_fd(),
                name: "b".into(),
            },
        ]);
        let (got, name) = passed.take_tcp(addr_b).unwrap();
        assert_eq!((got.local_addr().unwrap(), name.as_str()), (addr_b, "b"));
        // taken once only; an address nobody passed is not there
        assert!(passed.take_tcp(addr_b).is_none());
        assert!(passed.take_tcp("127.0.0.1:1".parse().unwrap()).is_none());
        assert!(passed.take_unix(&dir.path().join("other.socket")).is_none());
        let (_, name) = passed.take_unix(&sock).unwrap();
        assert_eq!(name, "dict");
        assert_eq!(passed.unused().len(), 1);
        let (got, _) = passed.take_tcp(addr_a).unwrap();
        assert_eq!(got.local_addr().unwrap(), addr_a);
        assert!(passed.unused().is_empty());
    }
}
