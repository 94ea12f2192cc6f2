//! auth's tables: devices and people (argon2id hashes only), and sessions (token hashes
//! only).

use crate::store::migrate::Migration;

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "devices",
        sql: "CREATE TABLE auth_devices (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0
          );",
    },
    Migration {
        version: 2,
        name: "people",
        sql: "CREATE TABLE auth_people (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            roles TEXT NOT NULL,
            password_hash TEXT,
            pin_hash TEXT,
            badge_digest TEXT,
            disabled INTEGER NOT NULL DEFAULT 0,
            updated_ms INTEGER NOT NULL
          );
          CREATE UNIQUE INDEX auth_people_badge ON auth_people (badge_digest);",
    },
    Migration {
        version: 3,
        name: "sessions",
        sql: "CREATE TABLE auth_sessions (
            token_hash TEXT PRIMARY KEY,
            person_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            seen_ms INTEGER NOT NULL,
            scope TEXT
          );
          CREATE INDEX auth_sessions_person ON auth_sessions (person_id, created_ms);",
    },
];
