//! People at the depot: staff with depot-scoped roles (dispatcher, driver, mechanic,
//! depot manager) and credentials that work with the cloud away: argon2id hashes of a
//! password and a PIN, and the digest of a badge. They come from the cloud as `person`
//! master records; a depot that is not enrolled manages them with `garasi-edge person`.
//! Wrong secrets are counted per person; five in a row lock that person out for five
//! minutes, so a PIN cannot be guessed at a tablet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use garasi_sync_protocol::people as rules;
use parking_lot::Mutex;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::api::token_of;
use super::metrics::AuthMetrics;
use super::people_store::{load, row};
use crate::http::ApiError;
use crate::store::{Store, StoreCallError};

pub(super) const LOCK_AFTER: u32 = 5;
pub(super) const LOCK_FOR: Duration = Duration::from_secs(300);
/// A dispatcher's shift plus margin.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(14 * 3600);
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

#[derive(Debug, Clone)]
pub struct Session {
    pub person: Person,
    expires: Instant,
}

/// The people API other modules use (dispatch: sign-on, attribution).
pub struct People {
    store: Store,
    metrics: Arc<AuthMetrics>,
    failures: Mutex<HashMap<String, (u32, Option<Instant>)>>,
    sessions: Mutex<HashMap<String, Session>>,
    memory: Arc<Mutex<Vec<argon2::Block>>>,
}

impl People {
    pub fn new(store: Store, metrics: Arc<AuthMetrics>) -> Self {
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
            .refusals_total
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
        let m = self.failures.lock();
        let (_, until) = m.get(id)?;
        let left = until.as_ref()?.checked_duration_since(Instant::now())?;
        Some(left.as_secs().max(1))
    }

    fn failed(&self, id: &str) -> u32 {
        let mut m = self.failures.lock();
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
        let ok = tokio::task::spawn_blocking(move || {
            super::devices::verify_with_memory(&hash, &secret, &mut memory.lock())
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
        self.failures.lock().remove(id);
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
        {
            let mut m = self.sessions.lock();
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
        let m = self.sessions.lock();
        m.get(token).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub(super) fn end_session(&self, token: &str) {
        self.sessions.lock().remove(token);
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
