//! Signed-in sessions, kept in the encrypted database so they survive a restart of the
//! node. Only a hash of each token is stored. A session follows its person: it records a
//! fingerprint of the person's roles, credentials and state, and every request compares
//! it with the person as stored now, so a demotion, a new password or PIN, or disabling
//! (locally or from the cloud) ends every older session at once. Sessions expire after
//! an idle period and absolutely after a shift.

use std::time::Duration;

use blake2::{Blake2b512, Digest};
use rand::RngCore;
use rusqlite::{params, OptionalExtension};

use super::people::Person;
use super::people_store::{row, Row};
use crate::store::{Store, StoreCallError};
use crate::util::now_ms;

/// A dispatcher's shift plus margin: no session lives longer.
pub const ABSOLUTE: Duration = Duration::from_secs(14 * 3600);
/// A session unused this long ends (a console left signed in overnight).
pub const IDLE: Duration = Duration::from_secs(4 * 3600);
/// Most sessions one person keeps; signing in again past it ends the oldest.
const PER_PERSON: i64 = 16;
/// `seen_ms` is rewritten at most this often, not on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn token_hash(token: &str) -> String {
    let mut h = Blake2b512::new();
    h.update(b"garasi-session-v1:");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..32])
}

/// What a session depends on: roles, password, PIN and the disabled flag. A change of
/// name or badge keeps the person signed in.
pub(super) fn fingerprint(r: &Row) -> String {
    let mut h = Blake2b512::new();
    for part in [
        r.person.roles.join(","),
        r.password_hash.clone().unwrap_or_default(),
        r.pin_hash.clone().unwrap_or_default(),
        r.disabled.to_string(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Opens a session for a person just verified as `row`, limited to the role `scope` when
/// given (a PIN opens a driver's session only); returns the token.
pub(super) async fn open(
    store: &Store,
    r: &Row,
    scope: Option<&'static str>,
) -> Result<String, StoreCallError> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let (hash, person, fp) = (token_hash(&token), r.person.id.clone(), fingerprint(r));
    store
        .write(move |c| {
            let now = now_ms();
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM auth_sessions WHERE created_ms < ?1 OR seen_ms < ?2",
                params![now - ms(ABSOLUTE), now - ms(IDLE)],
            )?;
            tx.execute(
                "INSERT INTO auth_sessions (token_hash, person_id, fingerprint, created_ms, seen_ms, scope) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![hash, person, fp, now, scope],
            )?;
            tx.execute(
                "DELETE FROM auth_sessions WHERE person_id = ?1 AND token_hash NOT IN
                   (SELECT token_hash FROM auth_sessions WHERE person_id = ?1 ORDER BY created_ms DESC LIMIT ?2)",
                params![person, PER_PERSON],
            )?;
            tx.commit()
        })
        .await?;
    Ok(token)
}

/// The person a token signs in, if the session is live and still matches the person.
/// A session that no longer matches is deleted.
pub(super) async fn check(store: &Store, token: &str) -> Result<Option<Person>, StoreCallError> {
    // A token is 64 hex digits; anything else is not looked up at all.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hash = token_hash(token);
    let h2 = hash.clone();
    let found = store
        .read(move |c| {
            c.query_row(
                "SELECT p.id, p.name, p.roles, p.password_hash, p.pin_hash, p.badge_digest, p.disabled,
                        s.fingerprint, s.created_ms, s.seen_ms, s.scope
                   FROM auth_sessions s LEFT JOIN auth_people p ON p.id = s.person_id
                  WHERE s.token_hash = ?1",
                params![h2],
                |r| {
                    let person = match r.get::<_, Option<String>>(0)? {
                        Some(_) => Some(row(r)?),
                        None => None,
                    };
                    Ok((
                        person,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                },
            )
            .optional()
        })
        .await?;
    let Some((person, fp, created, seen, scope)) = found else {
        return Ok(None);
    };
    let now = now_ms();
    let live = now - created < ms(ABSOLUTE) && now - seen < ms(IDLE);
    match person {
        Some(p) if live && !p.disabled && fingerprint(&p) == fp => {
            if now - seen > TOUCH_EVERY_MS {
                store
                    .write(move |c| {
                        c.execute(
                            "UPDATE auth_sessions SET seen_ms = ?2 WHERE token_hash = ?1",
                            params![hash, now],
                        )
                    })
                    .await?;
            }
            let mut person = p.person;
            if let Some(scope) = scope {
                person.roles.retain(|r| *r == scope);
            }
            Ok(Some(person))
        }
        _ => {
            end(store, token).await?;
            Ok(None)
        }
    }
}

/// Ends one session (sign out, or a session that no longer matches its person).
pub(super) async fn end(store: &Store, token: &str) -> Result<(), StoreCallError> {
    let hash = token_hash(token);
    store
        .write(move |c| {
            c.execute(
                "DELETE FROM auth_sessions WHERE token_hash = ?1",
                params![hash],
            )
        })
        .await?;
    Ok(())
}
