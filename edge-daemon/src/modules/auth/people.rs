//! People at the depot: staff with depot-scoped roles (dispatcher, driver, mechanic,
//! depot manager) and credentials that work with the cloud away: argon2id hashes of a
//! password and a PIN, and the digest of a badge. They come from the cloud as `person`
//! master records; a depot that is not enrolled manages them with `garasi-edge person`.
//! Wrong secrets are counted per person; five in a row lock that person out for five
//! minutes, so a PIN cannot be guessed at a tablet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use garasi_sync_protocol::people as rules;
use garasi_sync_protocol::record::FieldValue;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::store::{Store, StoreCallError};

/// Master data record type of a person.
pub const PERSON_RECORD: &str = "person";
const LOCK_AFTER: u32 = 5;
const LOCK_FOR: Duration = Duration::from_secs(300);
/// A dispatcher's shift plus margin.
const SESSION_TTL: Duration = Duration::from_secs(14 * 3600);
pub const SESSION_COOKIE: &str = "garasi_session";

/// A person as other modules see them (never the hashes).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub has_password: bool,
    pub has_pin: bool,
    pub has_badge: bool,
}

impl Person {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a login or sign-on was refused. The message says what to do; `reason` is the
/// metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the badge reader sent {0:?}, which is not a badge number: scan again")]
    Garbage(String),
    #[error("this badge is not registered at this depot: ask the depot manager")]
    UnknownBadge,
    #[error("no person {0:?} at this depot: check the id on your badge card")]
    UnknownPerson(String),
    #[error("wrong {what}: {left} attempt(s) left before a 5 minute lock")]
    WrongSecret { what: &'static str, left: u32 },
    #[error("too many wrong attempts: try again in {0} s or ask the dispatcher")]
    Locked(u64),
    #[error("{0} is disabled at this depot: ask the depot manager")]
    Disabled(String),
    #[error("{who} has no {what} set: ask the depot manager")]
    NoCredential { who: String, what: &'static str },
    #[error("the credential store failed: {0}")]
    Store(String),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Garbage(_) => "garbage",
            Refusal::UnknownBadge => "unknown_badge",
            Refusal::UnknownPerson(_) => "unknown_person",
            Refusal::WrongSecret { .. } => "wrong_secret",
            Refusal::Locked(_) => "locked",
            Refusal::Disabled(_) => "disabled",
            Refusal::NoCredential { .. } => "no_credential",
            Refusal::Store(_) => "store_error",
        }
    }
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::Locked(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Garbage(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

struct Row {
    person: Person,
    password_hash: Option<String>,
    pin_hash: Option<String>,
    disabled: bool,
}

fn load(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Row>> {
    c.query_row(
        "SELECT id, name, roles, password_hash, pin_hash, badge_digest, disabled FROM auth_people WHERE id = ?1",
        params![id],
        row,
    )
    .optional()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
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
fn write(c: &rusqlite::Connection, p: &PersonIn) -> rusqlite::Result<usize> {
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
) -> Result<(), String> {
    let f = super::super::sync::apply_master(tx, PERSON_RECORD, id, changes)?;
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
    if !super::valid_id(id) || roles.is_empty() {
        tracing::warn!(person = id, "cloud person record is invalid; ignored");
        return Ok(());
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
    .map_err(|e| e.to_string())?;
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

#[derive(Debug, Clone)]
pub struct Session {
    pub person: Person,
    expires: Instant,
}

/// The people API other modules use (dispatch: sign-on, attribution).
pub struct People {
    store: Store,
    metrics: Arc<Metrics>,
    failures: Mutex<HashMap<String, (u32, Option<Instant>)>>,
    sessions: Mutex<HashMap<String, Session>>,
    memory: Arc<Mutex<Vec<argon2::Block>>>,
}

impl People {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        People {
            store,
            metrics,
            failures: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            memory: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn refuse(&self, method: &str, r: Refusal) -> Refusal {
        self.metrics
            .auth_refusals_total
            .with_label_values(&[method, r.reason()])
            .inc();
        tracing::info!(method, reason = r.reason(), "login or sign-on refused");
        r
    }

    /// Counts a refusal found outside this API (e.g. a garbage badge line).
    pub fn count_refusal(&self, method: &str, r: Refusal) -> Refusal {
        self.refuse(method, r)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Person>, StoreCallError> {
        let id = id.to_string();
        Ok(self
            .store
            .read(move |c| load(c, &id))
            .await?
            .filter(|r| !r.disabled)
            .map(|r| r.person))
    }

    /// Everyone enabled at this depot, by name.
    pub async fn list(&self) -> Result<Vec<Person>, StoreCallError> {
        self.store
            .read(|c| {
                let mut st = c.prepare_cached(
                    "SELECT id, name, roles, password_hash, pin_hash, badge_digest, disabled FROM auth_people WHERE disabled = 0 ORDER BY name, id",
                )?;
                let rows = st.query_map([], row)?;
                rows.map(|r| r.map(|r| r.person)).collect()
            })
            .await
    }

    fn locked(&self, id: &str) -> Option<u64> {
        let m = self.failures.lock().ok()?;
        let (_, until) = m.get(id)?;
        let left = until.as_ref()?.checked_duration_since(Instant::now())?;
        Some(left.as_secs().max(1))
    }

    fn failed(&self, id: &str) -> u32 {
        let Ok(mut m) = self.failures.lock() else {
            return 0;
        };
        if m.len() > 10_000 {
            m.clear();
        }
        let e = m.entry(id.to_string()).or_insert((0, None));
        if e.1.is_some_and(|t| t <= Instant::now()) {
            *e = (0, None);
        }
        e.0 += 1;
        if e.0 >= LOCK_AFTER {
            e.1 = Some(Instant::now() + LOCK_FOR);
            0
        } else {
            LOCK_AFTER - e.0
        }
    }

    /// Checks `id`'s password (`pin == false`) or PIN.
    async fn verify(&self, id: &str, secret: &str, pin: bool) -> Result<Person, Refusal> {
        let method = if pin { "pin" } else { "password" };
        let what = if pin { "PIN" } else { "password" };
        if let Some(s) = self.locked(id) {
            return Err(self.refuse(method, Refusal::Locked(s)));
        }
        let id2 = id.to_string();
        let found = self
            .store
            .read(move |c| load(c, &id2))
            .await
            .map_err(|e| self.refuse(method, Refusal::Store(e.to_string())))?;
        let Some(row) = found else {
            return Err(self.refuse(method, Refusal::UnknownPerson(id.into())));
        };
        if row.disabled {
            return Err(self.refuse(method, Refusal::Disabled(row.person.name)));
        }
        let hash = if pin { row.pin_hash } else { row.password_hash };
        let Some(hash) = hash else {
            return Err(self.refuse(
                method,
                Refusal::NoCredential {
                    who: row.person.name,
                    what,
                },
            ));
        };
        let (secret, memory) = (secret.to_string(), self.memory.clone());
        let ok = tokio::task::spawn_blocking(move || match memory.lock() {
            Ok(mut m) => super::verify_with_memory(&hash, &secret, &mut m),
            Err(_) => false,
        })
        .await
        .unwrap_or(false);
        if !ok {
            let left = self.failed(id);
            let r = if left == 0 {
                Refusal::Locked(LOCK_FOR.as_secs())
            } else {
                Refusal::WrongSecret { what, left }
            };
            return Err(self.refuse(method, r));
        }
        if let Ok(mut m) = self.failures.lock() {
            m.remove(id);
        }
        Ok(row.person)
    }

    pub async fn verify_password(&self, id: &str, password: &str) -> Result<Person, Refusal> {
        self.verify(id, password, false).await
    }

    pub async fn verify_pin(&self, id: &str, pin: &str) -> Result<Person, Refusal> {
        if !rules::valid_pin(pin) {
            let left = self.failed(id);
            return Err(self.refuse("pin", Refusal::WrongSecret { what: "PIN", left }));
        }
        self.verify(id, pin, true).await
    }

    /// The person a scanned badge line belongs to. The line is checked first: readers
    /// send noise when a card is swiped badly.
    pub async fn by_badge(&self, line: &str) -> Result<Person, Refusal> {
        let badge = line.trim();
        if !rules::valid_badge(badge) {
            let shown: String = badge.chars().take(40).collect();
            return Err(self.refuse("badge", Refusal::Garbage(shown)));
        }
        let digest = rules::badge_digest(badge);
        let found = self
            .store
            .read(move |c| {
                c.query_row(
                    "SELECT id, name, roles, password_hash, pin_hash, badge_digest, disabled FROM auth_people WHERE badge_digest = ?1",
                    params![digest],
                    row,
                )
                .optional()
            })
            .await
            .map_err(|e| self.refuse("badge", Refusal::Store(e.to_string())))?;
        match found {
            None => Err(self.refuse("badge", Refusal::UnknownBadge)),
            Some(r) if r.disabled => Err(self.refuse("badge", Refusal::Disabled(r.person.name))),
            Some(r) => Ok(r.person),
        }
    }

    /// Opens a session for `person`; the token goes into a cookie.
    pub fn open_session(&self, person: Person) -> String {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        if let Ok(mut m) = self.sessions.lock() {
            let now = Instant::now();
            m.retain(|_, s| s.expires > now);
            m.insert(
                token.clone(),
                Session {
                    person,
                    expires: now + SESSION_TTL,
                },
            );
        }
        token
    }

    pub fn session(&self, token: &str) -> Option<Session> {
        let m = self.sessions.lock().ok()?;
        m.get(token).filter(|s| s.expires > Instant::now()).cloned()
    }

    fn end_session(&self, token: &str) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(token);
        }
    }

    /// The session a request carries (cookie, or `authorization: Bearer`).
    pub fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        self.session(&token_of(headers)?)
    }

    /// The signed-in person, who must hold one of `roles`; otherwise a 401/403 that says
    /// what to do.
    pub fn require(&self, headers: &HeaderMap, roles: &[&str]) -> Result<Person, ApiError> {
        let s = self.session_of(headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "sign in first: POST /api/v1/session with your person id and password",
            )
        })?;
        if roles.iter().any(|r| s.person.has_role(r)) {
            Ok(s.person)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this needs one of the roles: {}", roles.join(", ")),
            ))
        }
    }
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == SESSION_COOKIE).then(|| v.to_string())
    })
}

/// `Set-Cookie` for a session: not readable by scripts, same-site only, a shift long.
pub fn session_cookie(token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    person: String,
    password: String,
}

async fn login(
    State(p): State<Arc<People>>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    let person = p
        .verify_password(b.person.trim(), &b.password)
        .await
        .map_err(|r| ApiError::new(r.status(), r.to_string()))?;
    let token = p.open_session(person.clone());
    Ok((
        [(header::SET_COOKIE, session_cookie(&token))],
        Json(serde_json::json!({ "person": person, "token": token })),
    )
        .into_response())
}

async fn whoami(
    State(p): State<Arc<People>>,
    headers: HeaderMap,
) -> Result<Json<Person>, ApiError> {
    p.session_of(&headers)
        .map(|s| Json(s.person))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not signed in"))
}

async fn logout(State(p): State<Arc<People>>, headers: HeaderMap) -> Response {
    if let Some(t) = token_of(&headers) {
        p.end_session(&t);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

async fn list(
    State(p): State<Arc<People>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.require(&headers, &["dispatcher", "depot_manager"])?;
    let people = p.list().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "people": people })))
}

pub(super) fn routes(people: Arc<People>) -> Router {
    Router::new()
        .route("/api/v1/session", get(whoami).post(login).delete(logout))
        .route("/api/v1/people", get(list))
        .with_state(people)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_cookie_or_bearer() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; garasi_session=abc123; c=d".parse().unwrap(),
        );
        assert_eq!(token_of(&h).as_deref(), Some("abc123"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        assert_eq!(token_of(&h).as_deref(), Some("t0k"));
        assert_eq!(token_of(&HeaderMap::new()), None);
    }
}
