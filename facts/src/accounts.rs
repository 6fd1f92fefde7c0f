//! Users and groups, from `getent`.

use serde::Serialize;

use crate::shell;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub(crate) fn passwd_snippet(names: &[&str]) -> String {
    getent("passwd", names)
}

pub(crate) fn group_snippet(names: &[&str]) -> String {
    getent("group", names)
}

fn getent(db: &str, names: &[&str]) -> String {
    if names.is_empty() {
        return String::new();
    }
    // getent exits 2 when a name is unknown: that is an answer, not a failure
    format!("getent {db} {} || true", shell::quote_all(names))
}

pub(crate) fn parse_passwd(out: &str) -> Result<Vec<User>, crate::Error> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let bad = || crate::Error::parse("users", format!("bad passwd line {line:?}"));
            if f.len() != 7 {
                return Err(bad());
            }
            Ok(User {
                name: f[0].to_string(),
                uid: f[2].parse().map_err(|_| bad())?,
                gid: f[3].parse().map_err(|_| bad())?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

pub(crate) fn parse_group(out: &str) -> Result<Vec<Group>, crate::Error> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let bad = || crate::Error::parse("groups", format!("bad group line {line:?}"));
            if f.len() != 4 {
                return Err(bad());
            }
            Ok(Group {
                name: f[0].to_string(),
                gid: f[2].parse().map_err(|_| bad())?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_passwd() {
        let u = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nsshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n",
        )
        .unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].name, "sshd");
        assert_eq!(u[1].uid, 101);
        assert_eq!(u[1].gid, 65534);
        assert_eq!(u[1].home, "/run/sshd");
        assert_eq!(u[1].shell, "/usr/sbin/nologin");
    }

    #[test]
    fn parses_captured_groups_with_members() {
        let g = parse_group("root:x:0:\nopendkim:x:112:postfix,opendkim\n").unwrap();
        assert!(g[0].members.is_empty());
        assert_eq!(g[1].gid, 112);
        assert_eq!(g[1].members, vec!["postfix", "opendkim"]);
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse_passwd("root:x:zero:0:root:/root:/bin/bash\n").is_err());
        assert!(parse_group("root:x\n").is_err());
    }
}
