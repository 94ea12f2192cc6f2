//! Schema migrations: each module ships an ordered list; applied ones are recorded with a
//! checksum so an edited, already-landed migration is caught instead of silently skipped.

use rusqlite::{params, Connection, OptionalExtension};

/// One forward-only schema step owned by a module. Never edit one that has shipped: add a
/// new version instead (the checksum check refuses start-up otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration {module} v{version} ({name}) failed: {source}")]
    Failed {
        module: String,
        version: u32,
        name: String,
        source: rusqlite::Error,
    },
    #[error("migration {module} v{version} was changed after it was applied (checksum differs): restore the original file and add a new migration instead")]
    Edited { module: String, version: u32 },
    #[error("module {module} declares migration versions out of order at v{version}: versions must start at 1 and increase by one")]
    BadOrder { module: String, version: u32 },
    #[error("database error reading migration history: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Outcome for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    UpToDate { version: u32 },
    Applied { from: u32, to: u32 },
}

pub fn ensure_history_table(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            module TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at_ms INTEGER NOT NULL,
            PRIMARY KEY (module, version)
        ) WITHOUT ROWID;",
    )
}

/// FNV-1a, 64-bit: stable across Rust versions (unlike `DefaultHasher`), and collisions
/// are irrelevant here because it only detects accidental edits.
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Applies the module's pending migrations, each in its own transaction with its history row.
pub fn run(
    conn: &mut Connection,
    module: &str,
    migrations: &[Migration],
) -> Result<Outcome, MigrationError> {
    ensure_history_table(conn)?;
    for (i, m) in migrations.iter().enumerate() {
        if m.version as usize != i + 1 {
            return Err(MigrationError::BadOrder {
                module: module.into(),
                version: m.version,
            });
        }
    }
    let mut current = 0;
    let mut from = None;
    for m in migrations {
        let applied: Option<String> = conn
            .query_row(
                "SELECT checksum FROM schema_migrations WHERE module = ?1 AND version = ?2",
                params![module, m.version],
                |r| r.get(0),
            )
            .optional()?;
        match applied {
            Some(sum) if sum == checksum(m.sql) => current = m.version,
            Some(_) => {
                return Err(MigrationError::Edited {
                    module: module.into(),
                    version: m.version,
                })
            }
            None => {
                from.get_or_insert(current);
                let fail = |source| MigrationError::Failed {
                    module: module.into(),
                    version: m.version,
                    name: m.name.into(),
                    source,
                };
                let tx = conn.transaction().map_err(fail)?;
                tx.execute_batch(m.sql).map_err(fail)?;
                tx.execute(
                    "INSERT INTO schema_migrations (module, version, name, checksum, applied_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![module, m.version, m.name, checksum(m.sql), crate::util::now_ms()],
                )
                .map_err(fail)?;
                tx.commit().map_err(fail)?;
                current = m.version;
            }
        }
    }
    Ok(match from {
        Some(from) => Outcome::Applied { from, to: current },
        None => Outcome::UpToDate { version: current },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[Migration] = &[
        Migration {
            version: 1,
            name: "create",
            sql: "CREATE TABLE a(x INTEGER);",
        },
        Migration {
            version: 2,
            name: "add",
            sql: "ALTER TABLE a ADD COLUMN y TEXT;",
        },
    ];

    #[test]
    fn applies_once_then_up_to_date() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(
            run(&mut c, "m", &M[..1]).unwrap(),
            Outcome::Applied { from: 0, to: 1 }
        );
        assert_eq!(
            run(&mut c, "m", M).unwrap(),
            Outcome::Applied { from: 1, to: 2 }
        );
        assert_eq!(
            run(&mut c, "m", M).unwrap(),
            Outcome::UpToDate { version: 2 }
        );
    }

    #[test]
    fn edited_migration_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        run(&mut c, "m", M).unwrap();
        let edited = [
            M[0],
            Migration {
                sql: "ALTER TABLE a ADD COLUMN z TEXT;",
                ..M[1]
            },
        ];
        assert!(matches!(
            run(&mut c, "m", &edited),
            Err(MigrationError::Edited { version: 2, .. })
        ));
    }

    #[test]
    fn failed_migration_leaves_no_history() {
        let mut c = Connection::open_in_memory().unwrap();
        let bad = [Migration {
            version: 1,
            name: "bad",
            sql: "CREATE TABLE b(x); NOT SQL;",
        }];
        assert!(matches!(
            run(&mut c, "m", &bad),
            Err(MigrationError::Failed { .. })
        ));
        let n: i64 = c
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        let t: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name='b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(t, 0, "the failed migration's DDL rolled back with it");
    }
}
