//! One charger's WebSocket after the door let it in: answers its CALLs in order, sends
//! the central system's CALLs one at a time (the next only after the answer or the
//! timeout), pings a quiet socket and closes a dead one. A bad frame gets its CALLERROR
//! and the connection goes on; nothing here can stop another charger's connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::frame::{self, ErrorCode, Frame};
use super::handle;
use crate::modules::charging::service::{CallFailure, ChargingApi, Outgoing};

/// A quiet connection is pinged this often; one silent for three pings is dead.
const PING_EVERY: Duration = Duration::from_secs(60);
const DEAD_AFTER: Duration = Duration::from_secs(180);
/// A charger that takes longer than this to take a frame is not reading: the
/// connection ends rather than hold the loop (and the CALLs queued behind it).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one frame within [`SEND_TIMEOUT`]; false if it failed or timed out.
async fn send(ws: &mut WebSocket, m: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(m)).await,
        Ok(Ok(()))
    )
}

struct Pending {
    id: String,
    action: &'static str,
    reply: oneshot::Sender<Result<Value, CallFailure>>,
    deadline: Instant,
}

/// Action label for metrics: the name when OCPP 1.6 has it, else `other`.
fn action_label(action: &str) -> &'static str {
    super::schema::FROM_CHARGER
        .iter()
        .map(|(n, _)| *n)
        .chain(super::schema::KNOWN_UNSUPPORTED.iter().copied())
        .find(|n| *n == action)
        .unwrap_or("other")
}

pub(super) async fn run(
    core: Arc<ChargingApi>,
    charger: String,
    connectors: i64,
    mut ws: WebSocket,
    shutdown: CancellationToken,
) {
    let mut reg = core.connect(&charger);
    tracing::info!(charger = %charger, "charger connected");
    let mut pending: Option<Pending> = None;
    let mut next_id: u64 = 0;
    // Ids unique across restarts too: a late answer to a CALL of an earlier process
    // never matches one of this one.
    let prefix: u32 = rand::random();
    let mut last_rx = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let timeout = core.call_timeout();
    let why = loop {
        let deadline = pending.as_ref().map(|p| p.deadline);
        tokio::select! {
            _ = shutdown.cancelled() => break "edge_stopping",
            _ = reg.cancel.cancelled() => break "replaced",
            msg = ws.recv() => {
                let text = match msg {
                    // The WebSocket layer refuses a message above max_frame_kib.
                    Some(Err(e)) if is_too_big(&e) => break "frame_too_big",
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break "closed",
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        last_rx = Instant::now();
                        // OCPP-J is text frames only.
                        let e = frame::error(frame::UNKNOWN_ID, ErrorCode::FormationViolation,
                            "OCPP-J frames are WebSocket text frames");
                        core.metrics.callerrors_sent.with_label_values(&["FormationViolation"]).inc();
                        if !send(&mut ws, Message::Text(e.into())).await { break "send_failed"; }
                        continue;
                    }
                    Some(Ok(_)) => { last_rx = Instant::now(); continue; }
                };
                last_rx = Instant::now();
                let out = on_text(&core, (&charger, connectors), text.as_str(), &mut pending).await;
                if let Some(out) = out {
                    if !send(&mut ws, Message::Text(out.into())).await { break "send_failed"; }
                }
            }
            out = reg.calls.recv(), if pending.is_none() => {
                let Some(Outgoing { action, payload, reply }) = out else { break "closed" };
                next_id += 1;
                let id = format!("{prefix:08x}-{:x}-{next_id}", reg.generation);
                let text = frame::call(&id, action, &payload);
                if !send(&mut ws, Message::Text(text.into())).await {
                    let _ = reply.send(Err(CallFailure::Closed));
                    break "send_failed";
                }
                pending = Some(Pending { id, action, reply, deadline: Instant::now() + timeout });
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await },
                if deadline.is_some() => {
                if let Some(p) = pending.take() {
                    let _ = p.reply.send(Err(CallFailure::Timeout(timeout.as_secs())));
                }
            }
            _ = ping.tick() => {
                if last_rx.elapsed() > DEAD_AFTER { break "no_pong"; }
                if last_rx.elapsed() >= PING_EVERY
                    && !send(&mut ws, Message::Ping(Default::default())).await {
                    break "send_failed";
                }
            }
        }
    };
    if let Some(p) = pending.take() {
        let _ = p.reply.send(Err(CallFailure::Closed));
    }
    // Calls still queued learn the charger is gone (their senders see the drop).
    reg.calls.close();
    let (code, reason) = match why {
        "frame_too_big" => (1009, "message too big"),
        _ => (1001, "going away"),
    };
    let _ = send(
        &mut ws,
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })),
    )
    .await;
    core.metrics.ended.with_label_values(&[why]).inc();
    core.disconnect(&charger, reg.generation);
    tracing::info!(charger = %charger, why, "charger disconnected");
}

/// Whether a receive error is tungstenite's "message too long" (the size limit; axum
/// does not expose the error's type, only its text).
fn is_too_big(e: &axum::Error) -> bool {
    let t = e.to_string();
    t.contains("too long") || t.contains("Space limit")
}

/// Handles one text frame; returns the frame to send back, if any.
async fn on_text(
    core: &ChargingApi,
    (charger, connectors): (&str, i64),
    text: &str,
    pending: &mut Option<Pending>,
) -> Option<String> {
    let refuse = |code: ErrorCode| {
        core.metrics
            .callerrors_sent
            .with_label_values(&[code.as_str()])
            .inc();
    };
    match frame::parse(text) {
        Err(r) => {
            tracing::debug!(charger, code = r.code.as_str(), "malformed OCPP frame");
            if !r.answer {
                return None;
            }
            refuse(r.code);
            Some(frame::error(&r.id, r.code, &r.description))
        }
        Ok(Frame::Call {
            id,
            action,
            payload,
        }) => {
            core.metrics
                .calls_in
                .with_label_values(&[action_label(&action)])
                .inc();
            Some(
                match handle::call(core, (charger, connectors), &action, payload).await {
                    Ok(answer) => frame::result(&id, &answer),
                    Err((code, description)) => {
                        refuse(code);
                        tracing::debug!(charger, action = %action.chars().take(40).collect::<String>(),
                        code = code.as_str(), "CALL refused");
                        frame::error(&id, code, &description)
                    }
                },
            )
        }
        Ok(Frame::Result { id, payload }) => {
            match pending.take_if(|p| p.id == id) {
                Some(p) => {
                    let r = core
                        .schemas
                        .check_answer(p.action, &payload)
                        .map(|_| payload)
                        .map_err(|v| CallFailure::BadAnswer(v.description));
                    let _ = p.reply.send(r);
                }
                None => tracing::debug!(charger, "answer to no outstanding CALL ignored"),
            }
            None
        }
        Ok(Frame::Error {
            id,
            code,
            description,
        }) => {
            if let Some(p) = pending.take_if(|p| p.id == id) {
                let _ = p
                    .reply
                    .send(Err(CallFailure::CallError { code, description }));
            }
            None
        }
    }
}
