//! auth's tables: devices and people (argon2id hashes only).

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
];
