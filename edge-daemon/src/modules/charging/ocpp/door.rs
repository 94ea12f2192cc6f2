//! The OCPP 1.6J door: `GET /ocpp/{chargeBoxId}` upgraded to a WebSocket with the
//! `ocpp1.6` subprotocol, for a charger whose HTTP Basic credentials (security profile
//! 1; profile 2 is the same on the HTTPS listener) are its charge box id and the
//! password the edge gave it. Everything is checked before the 101 answer, so a socket
//! that leaves HTTP's connection caps always belongs to a known charger, and a charger
//! has at most one (a new one replaces the old).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use crate::modules::auth::service::DeviceKind;
use crate::modules::charging::service::ChargingApi;

pub const SUBPROTOCOL: &str = "ocpp1.6";
/// How long a password check may take before the charger is told to come back.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Door {
    core: Arc<ChargingApi>,
    shutdown: CancellationToken,
}

pub fn routes(core: Arc<ChargingApi>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/ocpp/{id}", get(upgrade))
        .with_state(Door { core, shutdown })
}

fn refuse(core: &ChargingApi, status: StatusCode, reason: &'static str, message: &str) -> Response {
    core.metrics.refused.with_label_values(&[reason]).inc();
    let mut r = (status, message.to_string()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"garasi-ocpp\", charset=\"UTF-8\""),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    }
    r
}

/// The user and password of a `Basic` Authorization header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || b64.len() > 512 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn offers_ocpp16(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

async fn upgrade(
    State(door): State<Door>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    conn: Option<axum::Extension<garasi_net::ConnInfo>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let core = &door.core;
    let Ok(ws) = ws else {
        return refuse(
            core,
            StatusCode::BAD_REQUEST,
            "not_websocket",
            "OCPP chargers connect here with a WebSocket upgrade (ws:// or wss://)",
        );
    };
    if core.cfg.require_tls && !conn.is_some_and(|c| c.0.tls) {
        return refuse(core, StatusCode::FORBIDDEN, "plain",
            "this depot takes chargers over TLS only (security profile 2): use wss:// on the HTTPS port");
    }
    if !offers_ocpp16(&headers) {
        return refuse(
            core,
            StatusCode::BAD_REQUEST,
            "subprotocol",
            "offer the WebSocket subprotocol ocpp1.6 (Sec-WebSocket-Protocol)",
        );
    }
    let Some((user, password)) = basic_credentials(&headers) else {
        return refuse(
            core,
            StatusCode::UNAUTHORIZED,
            "no_credentials",
            "send HTTP Basic credentials: the charge box id and its password (AuthorizationKey)",
        );
    };
    if user != id {
        return refuse(
            core,
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong charge box id or password",
        );
    }
    let verdict = tokio::time::timeout(
        AUTH_TIMEOUT,
        core.devices.verify(peer.ip(), &user, &password),
    )
    .await;
    let identity = match verdict {
        Ok(Ok(Some(i))) if i.kind == DeviceKind::Charger => i,
        Ok(Ok(_)) => {
            if AUTH_FAILED.allow() {
                // Logged only when it could be an id: a stranger's garbage never is.
                let who = if crate::modules::auth::service::valid_id(&id) {
                    id.as_str()
                } else {
                    "(not an id)"
                };
                tracing::warn!(%peer, charger = who, "charger authentication failed");
            }
            return refuse(
                core,
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong charge box id or password",
            );
        }
        Ok(Err(_)) | Err(_) => {
            return refuse(
                core,
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_busy",
                "too many password checks at once: connect again in a few seconds",
            );
        }
    };
    let connectors = match core.charger(&identity.id).await {
        Ok(Some(c)) => c.connectors,
        Ok(None) => {
            return refuse(
                core,
                StatusCode::UNAUTHORIZED,
                "not_a_charger",
                "this device is not registered as a charger: add it with `garasi-edge charging add`",
            );
        }
        Err(_) => return refuse(core, StatusCode::SERVICE_UNAVAILABLE, "store", "try again"),
    };
    let max = core.cfg.max_frame_kib * 1024;
    let (core, shutdown) = (door.core.clone(), door.shutdown.clone());
    ws.protocols([SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| super::conn::run(core, identity.id, connectors, socket, shutdown))
}

/// Failed charger logins: a few lines a minute (a guessing flood must not flood the
/// log); every one is counted in `charging_ocpp_refused_total`.
static AUTH_FAILED: crate::lograte::LogRate =
    crate::lograte::LogRate::warn("ocpp.charger_auth_failed", 10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_and_subprotocol_are_read_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        let enc = base64::engine::general_purpose::STANDARD.encode("CP-1:s3cret:x");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {enc}").parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("CP-1".into(), "s3cret:x".into()))
        );
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        assert!(!offers_ocpp16(&h));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "ocpp2.0.1, ocpp1.6".parse().unwrap(),
        );
        assert!(offers_ocpp16(&h));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, "ocpp1.6j".parse().unwrap());
        assert!(!offers_ocpp16(&h));
    }
}
