//! People's rows: the cloud's `person` master data and locally managed people
//! (a depot without a cloud), written with their argon2id hashes.

use argon2::password_hash::PasswordHash;
use garasi_sync_protocol::people as rules;
use garasi_sync_protocol::record::FieldValue;
use rusqlite::{params, OptionalExtension};

use super::people::Person;
use crate::modules::sync::service::apply_master;
use crate::modules::sync::service::ApplyError;
use crate::store::Store;

/// Master data record type of a person.
pub const PERSON_RECORD: &str = garasi_sync_protocol::records::PERSON;

pub(super) struct Row {
    pub(super) person: Person,
    pub(super) password_hash: Option<String>,
    pub(super) pin_hash: Option<String>,
    pub(super) disabled: bool,
}

pub(super) fn load(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Row>> {
    c.query_row(
        "SELECT id, name, roles, password_hash, pin_hash, badge_digest, disabled FROM auth_people WHERE id = ?1",
        params![id],
        row,
    )
    .optional()
}

pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let roles: String = r.get(2)?;
    let password_hash: Option<String> = r.get(3)?;
    let pin_hash: Option<String> = r.get(4)?;
    let badge: Option<String> = r.get(5)?;
    Ok(Row {
        person: Person {
            id: r.get(0)?,
            name: r.get(1)?,
            roles: roles
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            has_password: password_hash.is_some(),
            has_pin: pin_hash.is_some(),
            has_badge: badge.is_some(),
        },
        password_hash,
        pin_hash,
        disabled: r.get(6)?,
    })
}

/// Writes one person (the cloud's master data or a local edit). A badge belongs to one
/// person: giving it to someone else takes it from its former holder (cards are
/// reissued), so a duplicate never blocks sync.
pub(super) fn write(c: &rusqlite::Connection, p: &PersonIn) -> rusqlite::Result<usize> {
    if let Some(d) = &p.badge_digest {
        c.execute(
            "UPDATE auth_people SET badge_digest = NULL WHERE badge_digest = ?1 AND id != ?2",
            params![d, p.id],
        )?;
    }
    c.execute(
        "INSERT INTO auth_people (id, name, roles, password_hash, pin_hash, badge_digest, disabled, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, roles = excluded.roles,
           password_hash = coalesce(excluded.password_hash, auth_people.password_hash),
           pin_hash = coalesce(excluded.pin_hash, auth_people.pin_hash),
           badge_digest = coalesce(excluded.badge_digest, auth_people.badge_digest),
           disabled = excluded.disabled, updated_ms = excluded.updated_ms",
        params![
            p.id,
            p.name,
            p.roles.join(","),
            p.password_hash,
            p.pin_hash,
            p.badge_digest,
            p.disabled,
            crate::util::now_ms()
        ],
    )
}

/// A person to store, credentials already hashed.
#[derive(Debug, Clone, Default)]
pub struct PersonIn {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub password_hash: Option<String>,
    pub pin_hash: Option<String>,
    pub badge_digest: Option<String>,
    pub disabled: bool,
}

/// Applies the cloud's master data for one person (sync transaction).
pub(super) fn apply_master_person(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    changes: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let f = apply_master(tx, PERSON_RECORD, id, changes)?;
    let text = |k: &str| match f.get(k) {
        Some(FieldValue::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let roles: Vec<String> = text("roles")
        .unwrap_or_default()
        .split(',')
        .filter(|r| rules::valid_role(r))
        .map(String::from)
        .collect();
    let Some(name) = text("name") else {
        tracing::warn!(
            person = id,
            "cloud person record has no name yet; not usable"
        );
        return Ok(());
    };
    if !crate::modules::auth::service::valid_id(id) {
        tracing::warn!(person = id, "cloud person record is invalid; ignored");
        return Ok(());
    }
    if roles.is_empty() {
        // Stored with no roles rather than skipped: skipping would leave the old roles,
        // and the sessions that rely on them, in force.
        tracing::warn!(
            person = id,
            "cloud person record has no role this build knows; stored with none"
        );
    }
    let hash_ok = |h: Option<String>| h.filter(|h| PasswordHash::new(h).is_ok());
    write(
        tx,
        &PersonIn {
            id: id.into(),
            name,
            roles,
            password_hash: hash_ok(text("password_hash")),
            pin_hash: hash_ok(text("pin_hash")),
            badge_digest: text("badge_digest").filter(|d| d.len() == 64),
            disabled: matches!(f.get("disabled"), Some(FieldValue::Bool(true))),
        },
    )
    .map_err(ApplyError::from)?;
    Ok(())
}

/// A person given in clear at this depot (CLI, demo): checked and hashed here.
pub struct NewPerson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub roles: &'a [String],
    pub password: Option<&'a str>,
    pub pin: Option<&'a str>,
    pub badge: Option<&'a str>,
}

/// Adds or updates a person locally (depots that are not enrolled with a cloud).
pub fn upsert_local(store: &Store, p: &NewPerson<'_>) -> Result<(), String> {
    let problems = rules::problems(p.id, p.name, p.roles, p.password, p.pin, p.badge);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let person = PersonIn {
        id: p.id.into(),
        name: p.name.trim().into(),
        roles: p.roles.to_vec(),
        password_hash: p.password.map(rules::hash_secret).transpose()?,
        pin_hash: p.pin.map(rules::hash_secret).transpose()?,
        badge_digest: p.badge.map(rules::badge_digest),
        disabled: false,
    };
    store
        .write_blocking(move |c| write(c, &person))
        .map_err(|e| e.to_string())?;
    Ok(())
}
