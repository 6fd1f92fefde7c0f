//! One-time migration from the SQLite password database of relays set up before 2024 into
//! per-address password files. Runs when doveauth starts and `passdb_path` exists; afterwards
//! the database is renamed to `<name>.old`, so it never runs twice.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::user::with_suffix;

/// Log progress every this many migrated accounts.
const PROGRESS_EVERY: usize = 10_000;

/// One `users` row: address, stored hash, last-login timestamp if any.
type Row = (String, String, Option<i64>);

fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::io(path, std::io::Error::other(e))
}

/// The last-login column held integers, but empty strings occur in old databases; zero and
/// empty mean "unknown" (as they did for the Python code).
fn last_login(value: ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Integer(i) if i != 0 => Some(i),
        ValueRef::Real(f) if f != 0.0 => Some(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|&i| i != 0),
        _ => None,
    }
}

fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_error(path, e))?;
    let mut stmt = conn
        .prepare("SELECT * FROM users")
        .map_err(|e| db_error(path, e))?;
    let columns = stmt.column_count();
    let rows = stmt
        .query_map([], |row| {
            let login = if columns >= 3 {
                last_login(row.get_ref(2)?)
            } else {
                None
            };
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, login))
        })
        .map_err(|e| db_error(path, e))?;
    rows.collect::<std::result::Result<_, _>>()
        .map_err(|e| db_error(path, e))
}

/// Migrate if the database exists; returns the number of accounts written.
pub fn migrate_from_db(config: &Config) -> Result<usize> {
    let path = &config.passdb_path;
    if !path.exists() {
        return Ok(0);
    }
    let all = read_rows(path)?;
    // Test accounts of CI runs are not worth keeping.
    let rows: Vec<&Row> = all
        .iter()
        .filter(|(addr, ..)| !(addr.starts_with("ci-") || addr.starts_with("ac_")))
        .collect();
    log::info!("ignoring {} CI accounts", all.len() - rows.len());
    log::info!(
        "migrating {} sqlite database passwords to user dirs",
        rows.len()
    );
    for (i, (addr, password, login)) in rows.iter().enumerate() {
        let user = config.get_user(addr)?;
        user.set_password(password)?;
        if let Some(ts) = login {
            user.set_last_login(*ts)?;
        }
        if i > 0 && i % PROGRESS_EVERY == 0 {
            log::info!("migration-progress: {i} passwords transferred");
        }
    }
    let old = with_suffix(path, ".old");
    std::fs::rename(path, &old).map_err(|e| Error::io(path, e))?;
    // Journal and WAL files belong to the renamed database and would confuse SQLite later.
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}-", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            for entry in entries.filter_map(|e| e.ok()) {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    log::info!("migration: moved database to {}", old.display());
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(extra_columns: &str) -> (tempfile::TempDir, Config, Connection) {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("passdb.sqlite");
        let config = Config::parse(
            &format!(
                "[params]\nmail_domain = example.org\nmailboxes_dir = {}\npassdb_path = {}\n",
                tmp.path().join("mail").display(),
                db.display()
            ),
            "t.ini",
        )
        .unwrap();
        let conn = Connection::open(&db).unwrap();
        conn.execute(
            &format!("CREATE TABLE users (addr TEXT PRIMARY KEY, password TEXT{extra_columns})"),
            [],
        )
        .unwrap();
        (tmp, config, conn)
    }

    #[test]
    fn no_database_no_migration() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config::parse(
            &format!(
                "[params]\nmail_domain = x.org\npassdb_path = {}\n",
                tmp.path().join("none.sqlite").display()
            ),
            "t.ini",
        )
        .unwrap();
        assert_eq!(migrate_from_db(&config).unwrap(), 0);
    }

    #[test]
    fn migrates_passwords_and_last_login() {
        let (tmp, config, conn) = setup(", last_login INTEGER");
        for i in 0..50i64 {
            conn.execute(
                "INSERT INTO users VALUES (?1, ?2, ?3)",
                (
                    format!("somsom{i:03}@example.org"),
                    format!("passwo{i:03}"),
                    i * 86_400 + 5,
                ),
            )
            .unwrap();
            conn.execute(
                "INSERT INTO users VALUES (?1, ?2, '')",
                (format!("pompom{i:03}@example.org"), format!("wopass{i:03}")),
            )
            .unwrap();
        }
        for ci in ["ci-abcdef@example.org", "ac_xyz@example.org"] {
            conn.execute("INSERT INTO users VALUES (?1, 'x', 1)", [ci])
                .unwrap();
        }
        drop(conn);
        std::fs::write(tmp.path().join("passdb.sqlite-wal"), "").unwrap();
        std::fs::write(tmp.path().join("passdb.sqlite-journal"), "").unwrap();

        assert_eq!(migrate_from_db(&config).unwrap(), 100);
        for i in 0..50 {
            let u = config
                .get_user(&format!("somsom{i:03}@example.org"))
                .unwrap();
            assert_eq!(
                u.record().unwrap().unwrap().password,
                format!("passwo{i:03}")
            );
            assert_eq!(u.last_login(), Some(i64::from(i) * 86_400));
            assert!(u.enforce_e2ee_path.exists());
            let u = config
                .get_user(&format!("pompom{i:03}@example.org"))
                .unwrap();
            assert_eq!(
                u.record().unwrap().unwrap().password,
                format!("wopass{i:03}")
            );
        }
        assert!(!config.mailboxes_dir.join("ci-abcdef@example.org").exists());
        assert!(!config.mailboxes_dir.join("ac_xyz@example.org").exists());
        assert!(!config.passdb_path.exists());
        assert!(tmp.path().join("passdb.sqlite.old").exists());
        assert!(!tmp.path().join("passdb.sqlite-wal").exists());
        assert!(!tmp.path().join("passdb.sqlite-journal").exists());
        // Second run: nothing to do.
        assert_eq!(migrate_from_db(&config).unwrap(), 0);
    }

    #[test]
    fn two_column_table() {
        let (_tmp, config, conn) = setup("");
        conn.execute("INSERT INTO users VALUES ('abc@example.org', 'pw')", [])
            .unwrap();
        drop(conn);
        assert_eq!(migrate_from_db(&config).unwrap(), 1);
        let u = config.get_user("abc@example.org").unwrap();
        assert_eq!(u.record().unwrap().unwrap().password, "pw");
    }

    #[test]
    fn broken_database_is_an_error_and_kept() {
        let (tmp, config, conn) = setup("");
        drop(conn);
        std::fs::write(&config.passdb_path, "not a database").unwrap();
        assert!(migrate_from_db(&config).is_err());
        assert!(tmp.path().join("passdb.sqlite").exists());
    }

    #[test]
    fn last_login_values() {
        assert_eq!(last_login(ValueRef::Integer(5)), Some(5));
        assert_eq!(last_login(ValueRef::Integer(0)), None);
        assert_eq!(last_login(ValueRef::Text(b"")), None);
        assert_eq!(last_login(ValueRef::Text(b"86400")), Some(86_400));
        assert_eq!(last_login(ValueRef::Null), None);
        assert_eq!(last_login(ValueRef::Real(2.5)), Some(2));
    }
}
