//! Type, owner, group, mode, sha256 and link target of a list of paths.
//!
//! Two processes in all, whatever the number of paths: one `find` prints the metadata, one
//! `sha256sum` hashes the regular files.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::shell;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// What is at one path; absent paths have no `PathState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathState {
    pub kind: PathKind,
    pub owner: String,
    pub group: String,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    /// Hex sha256 of a regular file's content.
    pub sha256: Option<String>,
    /// Target of a symlink.
    pub link_target: Option<String>,
}

const SEPARATOR: &str = "--hashes--";

pub(crate) fn snippet(paths: &[&str]) -> String {
    if paths.is_empty() {
        return String::new();
    }
    let quoted = shell::quote_all(paths);
    format!(
        "find {quoted} -maxdepth 0 -printf '%y\\t%u\\t%g\\t%m\\t%l\\t%p\\n' 2>/dev/null\n\
         echo {SEPARATOR}\n\
         find {quoted} -maxdepth 0 -type f -exec sha256sum {{}} + 2>/dev/null\n\
         true"
    )
}

pub(crate) fn parse(out: &str) -> Result<BTreeMap<String, PathState>, crate::Error> {
    let (stats, hashes) = out
        .split_once(SEPARATOR)
        .ok_or_else(|| crate::Error::parse("paths", "separator line missing"))?;
    let mut hash_of: BTreeMap<&str, &str> = BTreeMap::new();
    for line in hashes.lines().filter(|l| !l.is_empty()) {
        let (hash, path) = line
            .split_once("  ")
            .ok_or_else(|| crate::Error::parse("paths", format!("bad sha256sum line {line:?}")))?;
        hash_of.insert(path, hash);
    }
    let mut result = BTreeMap::new();
    for line in stats.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.splitn(6, '\t').collect();
        let [kind, owner, group, mode, target, path] = f[..] else {
            return Err(crate::Error::parse(
                "paths",
                format!("bad find line {line:?}"),
            ));
        };
        let kind = match kind {
            "f" => PathKind::File,
            "d" => PathKind::Directory,
            "l" => PathKind::Symlink,
            _ => PathKind::Other,
        };
        let mode = u32::from_str_radix(mode, 8)
            .map_err(|_| crate::Error::parse("paths", format!("bad mode in {line:?}")))?;
        result.insert(
            path.to_string(),
            PathState {
                kind,
                owner: owner.to_string(),
                group: group.to_string(),
                mode,
                sha256: hash_of.get(path).map(|h| h.to_string()),
                link_target: (kind == PathKind::Symlink).then(|| target.to_string()),
            },
        );
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = "f\troot\troot\t644\t\t/etc/hostname\n\
d\troot\troot\t755\t\t/etc/ssh\n\
l\troot\troot\t777\t/usr/share/zoneinfo/Etc/UTC\t/etc/localtime\n\
f\tvmail\tvmail\t4755\t\t/usr/local/bin/with space\n\
--hashes--\n\
855fe6882de49825c98850b11d8e573f0485ac8c48c2e0c2ba2fa4459ead2365  /etc/hostname\n\
d5cf84ebef709974f3aa409f32801b596e8603fb2758817eb9084099260d162d  /usr/local/bin/with space\n";

    #[test]
    fn parses_captured_find_and_sha256sum_output() {
        let p = parse(CAPTURED).unwrap();
        assert_eq!(p.len(), 4);
        let host = &p["/etc/hostname"];
        assert_eq!(host.kind, PathKind::File);
        assert_eq!(host.mode, 0o644);
        assert_eq!(
            host.sha256.as_deref(),
            Some("855fe6882de49825c98850b11d8e573f0485ac8c48c2e0c2ba2fa4459ead2365")
        );
        assert_eq!(p["/etc/ssh"].kind, PathKind::Directory);
        assert_eq!(p["/etc/ssh"].sha256, None);
        let lt = &p["/etc/localtime"];
        assert_eq!(lt.kind, PathKind::Symlink);
        assert_eq!(
            lt.link_target.as_deref(),
            Some("/usr/share/zoneinfo/Etc/UTC")
        );
        let suid = &p["/usr/local/bin/with space"];
        assert_eq!(suid.mode, 0o4755);
        assert_eq!(suid.owner, "vmail");
        assert!(suid.sha256.is_some());
    }

    #[test]
    fn absent_paths_are_missing_from_the_map() {
        let p = parse("--hashes--\n").unwrap();
        assert!(p.is_empty());
    }

    #[test]
    fn malformed_output_is_an_error() {
        assert!(parse("f\troot\n").is_err());
        assert!(parse("f\troot\troot\tnotoctal\t\t/x\n--hashes--\n").is_err());
        assert!(parse("--hashes--\nnohash\n").is_err());
    }
}
