//! Depot credentials in SQLite: creating a depot with an expiring enrolment token,
//! trading a token for a new secret, issuing a new token, revoking both. Only hashes are
//! stored.

use rusqlite::{params, Connection, OptionalExtension};

use super::*;

pub(super) fn create(
    c: &mut Connection,
    name: &str,
    expires_ms: i64,
) -> Result<NewDepot, StoreError> {
    let (id, token) = (new_depot_id(), random_token());
    c.execute(
        "INSERT INTO depots (id, name, token_hash, token_expires_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, name, hash_secret(&token), expires_ms, now_ms()],
    )?;
    Ok(NewDepot {
        id,
        enrolment_token: token,
        expires_ms,
    })
}

/// `token_hash`: the hash of the token presented.
pub(super) fn enroll(c: &mut Connection, token_hash: &str) -> Result<DepotCredentials, StoreError> {
    let tx = c.transaction()?;
    let found: Option<(String, Option<i64>)> = tx
        .query_row(
            "SELECT id, token_expires_ms FROM depots WHERE token_hash = ?1",
            params![token_hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((depot_id, expires)) = found else {
        return Err(StoreError::BadToken);
    };
    if expires.is_none_or(|e| e <= now_ms()) {
        return Err(StoreError::TokenExpired);
    }
    let secret = random_token();
    tx.execute(
        "UPDATE depots SET token_hash = NULL, token_expires_ms = NULL, secret_hash = ?1 WHERE id = ?2",
        params![hash_secret(&secret), depot_id],
    )?;
    tx.commit()?;
    Ok(DepotCredentials { depot_id, secret })
}

pub(super) fn issue_token(
    c: &mut Connection,
    depot: &str,
    expires_ms: i64,
) -> Result<String, StoreError> {
    let token = random_token();
    let n = c.execute(
        "UPDATE depots SET token_hash = ?1, token_expires_ms = ?2 WHERE id = ?3",
        params![hash_secret(&token), expires_ms, depot],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchDepot(depot.into()));
    }
    Ok(token)
}

pub(super) fn revoke(c: &mut Connection, depot: &str) -> Result<(), StoreError> {
    let n = c.execute(
        "UPDATE depots SET secret_hash = NULL, token_hash = NULL, token_expires_ms = NULL WHERE id = ?1",
        params![depot],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchDepot(depot.into()));
    }
    Ok(())
}
