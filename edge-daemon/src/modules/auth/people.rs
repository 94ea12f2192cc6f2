//! People at the depot: staff with depot-scoped roles (dispatcher, driver, mechanic,
//! depot manager) and credentials that work with the cloud away: argon2id hashes of a
//! password and a PIN, and the digest of a badge. They come from the cloud as `person`
//! master records; a depot that is not enrolled manages them with `garasi-edge person`.
//! Guessing is held back three ways (`attempts.rs`, `crate::limit`): one check in flight
//! per person and per client address, five wrong answers in a row lock the person for
//! five minutes, and each address has a slowly refilling budget of failures.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use garasi_sync_protocol::people as rules;
use parking_lot::Mutex;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::api::token_of;
use super::attempts::{Attempts, NotNow};
use super::config::AuthConfig;
use super::metrics::AuthMetrics;
use super::people_store::{load, row, Row};
use super::sessions;
use crate::http::ApiError;
use crate::limit::{ClientLimiter, Held};
use crate::store::{Store, StoreCallError};
use garasi_sync_protocol::ids::valid_id;

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

/// Why a password or PIN was not accepted, for the metric label only: the person is
/// told the same thing in every case, so an answer never reveals who exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    WrongSecret,
    UnknownPerson,
    Disabled,
    NoCredential,
    BadFormat,
    /// Locked after wrong answers, or another check for the person is running: answered
    /// like a wrong answer, or the quick different answer would show the person exists.
    Locked,
    PersonBusy,
    /// A PIN for someone who is not a driver (PINs open driver sessions only).
    NotADriver,
}

/// Why a login or sign-on was refused. The message says what to do; `reason` is the
/// metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// What the reader sent, described by length and character classes (never the text:
    /// it could be a password typed into the wrong field).
    #[error("the badge reader sent {0}, which is not a badge number: scan again")]
    Garbage(String),
    #[error("this badge is not registered at this depot: ask the depot manager")]
    UnknownBadge,
    #[error("wrong person id or {what}: check both (5 wrong answers in a row lock the person for 5 minutes)")]
    Denied { what: &'static str, why: Denied },
    #[error("the node is busy checking sign-ins: try again in a moment")]
    Busy,
    #[error("too many wrong attempts from this device: try again in {0} s")]
    SlowDown(u64),
    #[error("{0} is disabled at this depot: ask the depot manager")]
    Disabled(String),
    #[error("the credential store failed: see the node's log")]
    Store(String),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Garbage(_) => "garbage",
            Refusal::UnknownBadge => "unknown_badge",
            // One label for every denial: /metrics is open, and a label per cause would
            // tell an onlooker whether a guessed id exists. The log has the cause.
            Refusal::Denied { .. } => "denied",
            Refusal::Busy => "busy",
            Refusal::SlowDown(_) => "client_limited",
            Refusal::Disabled(_) => "disabled",
            Refusal::Store(_) => "store_error",
        }
    }
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::Busy | Refusal::SlowDown(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Garbage(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub person: Person,
}

/// The people API other modules use (dispatch: sign-on, attribution).
pub struct People {
    store: Store,
    metrics: Arc<AuthMetrics>,
    cfg: AuthConfig,
    attempts: Attempts,
    clients: ClientLimiter,
    memory: Arc<Mutex<Vec<argon2::Block>>>,
    /// Verified when the person is unknown, disabled or has no such secret, so every
    /// refusal costs the same time as a wrong answer.
    decoy: String,
    /// Checks waiting or running at once, node-wide: past it, a sign-in is told to retry
    /// at once instead of queueing behind a flood from many addresses.
    checking: Arc<tokio::sync::Semaphore>,
    /// Addresses someone signed in from, with checks kept for them (`known_clients`).
    known: super::known_clients::KnownClients,
}

/// Password and PIN checks in the node's queue at once (each is ~40 ms of argon2).
const CHECKS_AT_ONCE: usize = 8;

impl People {
    pub fn new(store: Store, metrics: Arc<AuthMetrics>, cfg: AuthConfig) -> Self {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let decoy = rules::hash_secret(&hex::encode(raw)).unwrap_or_default();
        People {
            store,
            metrics,
            clients: ClientLimiter::new(cfg.client_policy()),
            cfg,
            attempts: Attempts::default(),
            memory: Arc::new(Mutex::new(Vec::new())),
            decoy,
            checking: Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE)),
            known: Default::default(),
        }
    }

    fn refuse(&self, method: &str, r: Refusal) -> Refusal {
        self.metrics
            .refusals_total
            .with_label_values(&[method, r.reason()])
            .inc();
        // Anyone can cause this line at will (guessing): a few a minute, then a summary;
        // the metric above still counts every refusal.
        static REFUSED: crate::lograte::LogRate =
            crate::lograte::LogRate::info("auth.signin_refused", 10);
        if REFUSED.allow() {
            let cause = match &r {
                Refusal::Denied { why, .. } => format!("{why:?}"),
                _ => String::new(),
            };
            tracing::info!(
                method,
                reason = r.reason(),
                cause,
                "login or sign-on refused"
            );
        }
        r
    }

    /// Counts a refusal found outside this API (e.g. a garbage badge line).
    pub fn count_refusal(&self, method: &str, r: Refusal) -> Refusal {
        self.refuse(method, r)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Person>, StoreCallError> {
        if !valid_id(id) {
            return Ok(None);
        }
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

    async fn argon2(&self, hash: String, secret: &str) -> bool {
        let (secret, memory) = (secret.to_string(), self.memory.clone());
        tokio::task::spawn_blocking(move || {
            super::devices::verify_with_memory(&hash, &secret, &mut memory.lock())
        })
        .await
        .unwrap_or(false)
    }

    /// Checks `id`'s password or PIN for a client at `ip`. Order matters: the client's
    /// budget first (one check in flight per address), then the person's slot (one check
    /// in flight per person, reserved before hashing), then one argon2 verification
    /// whatever the outcome, so unknown and known people take the same time.
    async fn verify(&self, ip: IpAddr, id: &str, secret: &str, pin: bool) -> Result<Row, Refusal> {
        let method = if pin { "pin" } else { "password" };
        let what = if pin { "PIN" } else { "password" };
        let _checking = self
            .checking
            .clone()
            .try_acquire_owned()
            .ok()
            .or_else(|| self.known.spare_check(ip))
            .ok_or_else(|| self.refuse(method, Refusal::Busy))?;
        let attempt = self.clients.begin(ip).map_err(|h| {
            self.refuse(
                method,
                match h {
                    Held::Busy => Refusal::Busy,
                    Held::Wait(d) => Refusal::SlowDown(d.as_secs().max(1)),
                },
            )
        })?;
        let well_formed = valid_id(id)
            && if pin {
                rules::valid_pin(secret) && secret.len() >= usize::from(self.cfg.pin_min_digits)
            } else {
                !secret.is_empty() && secret.len() <= 1024
            };
        let found = if well_formed {
            let id2 = id.to_string();
            self.store
                .read(move |c| load(c, &id2))
                .await
                .map_err(|e| self.refuse(method, Refusal::Store(e.to_string())))?
        } else {
            None
        };
        let (row, hash, why) = match found {
            None if !well_formed => (None, None, Denied::BadFormat),
            None => (None, None, Denied::UnknownPerson),
            Some(r) if r.disabled => (None, None, Denied::Disabled),
            Some(r) if pin && !r.person.has_role("driver") => (None, None, Denied::NotADriver),
            Some(r) => {
                let hash = if pin {
                    r.pin_hash.clone()
                } else {
                    r.password_hash.clone()
                };
                match hash {
                    Some(h) => (Some(r), Some(h), Denied::WrongSecret),
                    None => (None, None, Denied::NoCredential),
                }
            }
        };
        let (Some(row), Some(hash)) = (row, hash) else {
            let _ = self.argon2(self.decoy.clone(), secret).await;
            attempt.failed();
            return Err(self.refuse(method, Refusal::Denied { what, why }));
        };
        let slot = match self.attempts.reserve(&row.person.id) {
            Ok(slot) => slot,
            Err(n) => {
                let _ = self.argon2(self.decoy.clone(), secret).await;
                attempt.failed();
                let why = match n {
                    NotNow::Locked(_) => Denied::Locked,
                    NotNow::Busy => Denied::PersonBusy,
                };
                return Err(self.refuse(method, Refusal::Denied { what, why }));
            }
        };
        if self.argon2(hash, secret).await {
            slot.succeeded();
            self.known.remember(ip);
            return Ok(row);
        }
        attempt.failed();
        let why = if slot.failed() {
            // Outside the log limit (at most one line per person per lock, and the id
            // is a real person's, not attacker text): a manager must be able to see
            // why a dispatcher or driver cannot sign in, and from where it was tried.
            tracing::warn!(person = %row.person.id, cause = "Locked", client = %ip, method,
                "wrong answers in a row: this person is locked for a while (a right answer \
                 after the lock ends clears it)");
            Denied::Locked
        } else {
            why
        };
        Err(self.refuse(method, Refusal::Denied { what, why }))
    }

    /// Signs a person in with their password from `ip`: the person and a session token.
    pub async fn sign_in_password(
        &self,
        ip: IpAddr,
        id: &str,
        password: &str,
    ) -> Result<(Person, String), Refusal> {
        let row = self.verify(ip, id, password, false).await?;
        self.open_session(row, None).await
    }

    /// Checks a driver's PIN from `ip` and opens their session.
    pub async fn sign_in_pin(
        &self,
        ip: IpAddr,
        id: &str,
        pin: &str,
    ) -> Result<(Person, String), Refusal> {
        let row = self.verify(ip, id, pin, true).await?;
        // A PIN is a driver's short secret: the session it opens is a driver's only,
        // whatever else the person may do with their password (the session's
        // fingerprint still covers all their roles, so a change ends it).
        let (mut person, token) = self.open_session(row, Some("driver")).await?;
        person.roles.retain(|r| r == "driver");
        Ok((person, token))
    }

    async fn open_session(
        &self,
        row: Row,
        scope: Option<&'static str>,
    ) -> Result<(Person, String), Refusal> {
        let token = sessions::open(&self.store, &row, scope)
            .await
            .map_err(|e| Refusal::Store(e.to_string()))?;
        Ok((row.person, token))
    }

    /// The person a scanned badge line belongs to. The line is checked first: readers
    /// send noise when a card is swiped badly.
    pub async fn by_badge(&self, line: &str) -> Result<Person, Refusal> {
        let badge = line.trim();
        if !rules::valid_badge(badge) {
            return Err(self.refuse("badge", Refusal::Garbage(describe(line))));
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

    pub(super) async fn end_session(&self, token: &str) {
        if let Err(e) = sessions::end(&self.store, token).await {
            tracing::warn!(error = %e, "could not end a session");
        }
    }

    /// The session a request carries (cookie, or `authorization: Bearer`), if it is live
    /// and its person unchanged since it opened.
    pub async fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        let token = token_of(headers)?;
        match sessions::check(&self.store, &token).await {
            Ok(p) => p.map(|person| Session { person }),
            Err(e) => {
                tracing::warn!(error = %e, "session check failed");
                None
            }
        }
    }

    /// The signed-in person, who must hold one of `roles`; otherwise a 401/403 that says
    /// what to do.
    pub async fn require(&self, headers: &HeaderMap, roles: &[&str]) -> Result<Person, ApiError> {
        let s = self.session_of(headers).await.ok_or_else(|| {
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

/// A line's length and character classes, for refusals and logs that must not repeat it.
pub fn describe(line: &str) -> String {
    let mut classes = Vec::new();
    for (name, test) in [
        ("letters", char::is_alphabetic as fn(char) -> bool),
        ("digits", |c: char| c.is_ascii_digit()),
        ("spaces", char::is_whitespace),
        ("punctuation", |c: char| c.is_ascii_punctuation()),
        ("control characters", char::is_control),
    ] {
        if line.chars().any(test) {
            classes.push(name);
        }
    }
    if line.chars().any(|c| !c.is_ascii() && !c.is_alphabetic()) {
        classes.push("other symbols");
    }
    format!(
        "{} characters ({})",
        line.chars().count(),
        classes.join(", ")
    )
}
