//! The cloud's HTTP API for depots and admins: create depots (admin), enrol (one-time
//! token), push a sync batch, pull changes. Every sync route authenticates one depot
//! (`x-garasi-depot` + `authorization: Bearer <secret>`) and acts only on that depot's
//! data; bad batches get a clear error and change nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::wire::{self, Batch, Entry, WireError};
use serde::Deserialize;

use crate::store::{ChangeIn, CloudStore, StoreError, StreamRowIn};

/// JSON error `{"error": {"status", "message"}}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(serde_json::json!({ "error": { "status": self.0.as_u16(), "message": self.1 } })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadToken => ApiError(StatusCode::UNAUTHORIZED, e.to_string()),
            StoreError::NoSuchDepot(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: see the cloud's log".into(),
                )
            }
        }
    }
}

fn wire_error(e: WireError) -> ApiError {
    let status = match e {
        WireError::TooLarge { .. }
        | WireError::BodyTooLarge { .. }
        | WireError::TooManyEntries { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError(status, format!("sync batch rejected: {e}"))
}

pub struct AppState<S> {
    pub store: Arc<S>,
    /// Bearer token for admin routes (from the cloud's configuration).
    pub admin_token: Arc<str>,
    /// This process's automerge actor for records the cloud edits.
    pub actor: garasi_sync_protocol::actor::ActorId,
}

impl<S> AppState<S> {
    pub fn new(store: Arc<S>, admin_token: Arc<str>) -> Self {
        let actor =
            garasi_sync_protocol::actor::new_actor(garasi_sync_protocol::actor::Side::Cloud);
        AppState {
            store,
            admin_token,
            actor,
        }
    }
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            store: self.store.clone(),
            admin_token: self.admin_token.clone(),
            actor: self.actor.clone(),
        }
    }
}

fn require_admin<S>(s: &AppState<S>, headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = bearer(headers).is_some_and(|t| {
        subtle::ConstantTimeEq::ct_eq(t.as_bytes(), s.admin_token.as_bytes()).into()
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "admin routes need authorization: Bearer <admin token>".into(),
        ))
    }
}

/// Rebuilds one of a depot's records from every stored change.
async fn load_record<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    record_type: &str,
    record_id: &str,
) -> Result<(Record, usize), ApiError> {
    let changes = s
        .store
        .record_changes(depot, record_type, record_id)
        .await?;
    let mut record = Record::new(s.actor.clone());
    record.apply(&changes).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored changes do not load: {e}"),
        )
    })?;
    Ok((record, changes.len()))
}

fn record_json(
    record_type: &str,
    record_id: &str,
    record: &Record,
) -> Result<Json<serde_json::Value>, ApiError> {
    let fields = record
        .visible()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "record_type": record_type, "record_id": record_id, "fields": fields }),
    ))
}

/// The record as the cloud sees it (same merge rule as every replica).
async fn get_record<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path((depot, record_type, record_id)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    let (record, n) = load_record(&s, &depot, &record_type, &record_id).await?;
    if n == 0 {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("depot {depot} has no {record_type} record {record_id}"),
        ));
    }
    record_json(&record_type, &record_id, &record)
}

/// Edits fields of a depot's record as the cloud; the change reaches the depot on its
/// next pull, and wins a concurrent conflict on the same field.
async fn put_record<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path((depot, record_type, record_id)): Path<(String, String, String)>,
    body: Result<
        Json<serde_json::Map<String, serde_json::Value>>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    let Json(fields) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("body must be a JSON object of fields: {}", e.body_text()),
        )
    })?;
    let mut values = Vec::new();
    for (k, v) in &fields {
        let fv = match v {
            serde_json::Value::Null => FieldValue::Null,
            serde_json::Value::Bool(b) => FieldValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => FieldValue::Int(i),
                None => FieldValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(t) => FieldValue::Text(t.clone()),
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("field {k:?}: records hold scalars only"),
                ))
            }
        };
        values.push((k.as_str(), fv));
    }
    let (mut record, _) = load_record(&s, &depot, &record_type, &record_id).await?;
    let change = record
        .set(&values)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Some(change) = change {
        s.store
            .add_changes(
                &depot,
                &[ChangeIn {
                    record_type: record_type.clone(),
                    record_id: record_id.clone(),
                    change,
                }],
            )
            .await?;
    }
    record_json(&record_type, &record_id, &record)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The authenticated depot of a sync request.
async fn depot_of<S: CloudStore>(s: &AppState<S>, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "authenticate with x-garasi-depot and authorization: Bearer <depot secret>".into(),
        )
    };
    let depot = headers
        .get("x-garasi-depot")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let secret = bearer(headers).ok_or_else(unauthorized)?;
    if s.store.authenticate(depot, secret).await? {
        Ok(depot.to_string())
    } else {
        Err(unauthorized())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDepotBody {
    name: String,
}

async fn create_depot<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    body: Result<Json<NewDepotBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    require_admin(&s, &headers)?;
    let Json(b) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {}", e.body_text()),
        )
    })?;
    let d = s.store.create_depot(&b.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": d.id, "enrolment_token": d.enrolment_token })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    token: String,
}

async fn enroll<S: CloudStore>(
    State(s): State<AppState<S>>,
    body: Result<Json<EnrollBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {}", e.body_text()),
        )
    })?;
    let c = s.store.enroll(&b.token).await?;
    Ok(Json(
        serde_json::json!({ "depot_id": c.depot_id, "secret": c.secret }),
    ))
}

async fn push<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let depot = depot_of(&s, &headers).await?;
    let batch = wire::decode(&body).map_err(wire_error)?;
    if batch.depot != depot {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "batch is for depot {:?}; you are authenticated as {depot}",
                batch.depot
            ),
        ));
    }
    let (mut changes, mut rows) = (Vec::new(), Vec::new());
    for e in batch.entries {
        match e {
            Entry::Change {
                record_type,
                record_id,
                change,
            } => changes.push(ChangeIn {
                record_type,
                record_id,
                change,
            }),
            Entry::Stream {
                stream,
                seq,
                ts_ms,
                payload,
            } => {
                let seq = i64::try_from(seq).map_err(|_| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        "stream sequence out of range".into(),
                    )
                })?;
                rows.push(StreamRowIn {
                    stream,
                    seq,
                    ts_ms,
                    payload,
                });
            }
        }
    }
    let batch_seq = i64::try_from(batch.batch_seq).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "batch sequence out of range".into(),
        )
    })?;
    let out = s.store.push(&depot, batch_seq, &changes, &rows).await?;
    Ok(Json(
        serde_json::json!({ "replayed": out.replayed, "new_changes": out.new_changes, "new_rows": out.new_rows }),
    ))
}

#[derive(Deserialize)]
struct PullQuery {
    cursor: Option<i64>,
    limit: Option<i64>,
}

/// Returns a wire batch of the depot's changes after `cursor`; `batch_seq` carries the
/// cursor to ask from next time (unchanged when there is nothing new).
async fn pull<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Query(q): Query<PullQuery>,
) -> Result<Response, ApiError> {
    let depot = depot_of(&s, &headers).await?;
    let cursor = q.cursor.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let changes = s.store.pull(&depot, cursor, limit).await?;
    let next = changes.last().map(|c| c.cursor).unwrap_or(cursor);
    let batch = Batch {
        depot,
        batch_seq: next as u64,
        entries: changes
            .into_iter()
            .map(|c| Entry::Change {
                record_type: c.record_type,
                record_id: c.record_id,
                change: c.change,
            })
            .collect(),
    };
    let bytes = wire::encode(&batch).map_err(wire_error)?;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.garasi.sync-batch")],
        bytes,
    )
        .into_response())
}

async fn healthz() -> &'static str {
    "ok\n"
}

pub fn router<S: CloudStore + 'static>(state: AppState<S>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/admin/depots", post(create_depot::<S>))
        .route(
            "/api/v1/admin/depots/{depot}/records/{record_type}/{record_id}",
            get(get_record::<S>).put(put_record::<S>),
        )
        .route("/api/v1/enroll", post(enroll::<S>))
        .route("/api/v1/sync/push", post(push::<S>))
        .route("/api/v1/sync/pull", get(pull::<S>))
        .layer(DefaultBodyLimit::max(wire::MAX_WIRE_BYTES))
        .with_state(state)
}

/// Loads a rustls acceptor from PEM files (certificate chain, private key).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs: Vec<_> = rustls_pemfile::certs(&mut &read(cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    let key_der = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in the PEM file", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("TLS certificate/key rejected: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS on an already-bound listener until `cancel` fires.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = TowerToHyperService::new(app);
            let builder = Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            // Stopping the server also ends its open (keep-alive) connections: requests
            // in flight finish, idle connections close.
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
