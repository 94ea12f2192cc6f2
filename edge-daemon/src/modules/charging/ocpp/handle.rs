//! What the central system answers to each CALL a charger sends: schema check first
//! (the official schema of the action), then the typed payload (`ocpp-types`), then the
//! store. Every refusal is the CALLERROR OCPP 1.6J names for it.

use ocpp_types::v16 as t;
use ocpp_types::OcppTimestamp;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::frame::ErrorCode;
use super::readings::{over_profile, samples, OVER_PROFILE};
use super::schema::KNOWN_UNSUPPORTED;
use crate::modules::charging::records;
use crate::modules::charging::service::ChargingApi as Core;
use crate::modules::charging::sessions::{self, Sample, Start, Stop};
use crate::modules::charging::store::{self, Boot, ConnectorStatus};

pub type Refusal = (ErrorCode, String);

fn typed<T: DeserializeOwned>(payload: Value) -> Result<T, Refusal> {
    serde_json::from_value(payload).map_err(|e| {
        let mut d = e.to_string();
        d.truncate(200);
        (ErrorCode::PropertyConstraintViolation, d)
    })
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "charging store failed");
    (
        ErrorCode::InternalError,
        "the central system could not store this; send it again".into(),
    )
}

pub(super) fn ms(t: &OcppTimestamp) -> i64 {
    t.unix_seconds()
        .saturating_mul(1000)
        .saturating_add(i64::from(t.subsec_nanos() / 1_000_000))
}

fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The JSON string of a serde enum (its OCPP spelling).
pub(super) fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A connector id the charger has: 1..=connectors, or 0 (the charger itself) where
/// the action allows it.
fn connector(k: i64, connectors: i64, zero: bool) -> Result<(), Refusal> {
    if (k == 0 && zero) || (1..=connectors).contains(&k) {
        return Ok(());
    }
    Err((
        ErrorCode::PropertyConstraintViolation,
        format!("connectorId {k} is not a connector of this charger (it has {connectors})"),
    ))
}

/// Meter registers are Wh from 0 to 10^12 (a terawatt-hour); anything else is a
/// broken meter or a hostile charger, refused before it reaches any sum.
pub(super) const MAX_WH: i64 = 1_000_000_000_000;

fn register(wh: i64) -> Result<(), Refusal> {
    if (0..=MAX_WH).contains(&wh) {
        return Ok(());
    }
    Err((
        ErrorCode::PropertyConstraintViolation,
        format!("meter register {wh} Wh is out of range"),
    ))
}

/// OCPP implementations use 32-bit transaction ids; larger ones are refused.
fn transaction_id(t: i64) -> Result<(), Refusal> {
    if i64::from(i32::MIN) <= t && t <= i64::from(i32::MAX) {
        return Ok(());
    }
    Err((
        ErrorCode::PropertyConstraintViolation,
        format!("transactionId {t} is not a 32-bit integer"),
    ))
}

/// A charger's time as it sent it (so a retried message is recognised as the same).
fn when(t: &OcppTimestamp) -> i64 {
    ms(t)
}

/// A transaction's time more than ten minutes ahead of the edge's is refused: a charger
/// clock far in the future would pin "newest" values for years. The charger should
/// set its clock from the BootNotification or Heartbeat answer.
fn not_ahead(t: &OcppTimestamp) -> Result<(), Refusal> {
    if ms(t) <= crate::util::now_ms() + 10 * 60_000 {
        return Ok(());
    }
    Err((
        ErrorCode::PropertyConstraintViolation,
        "timestamp is more than 10 minutes ahead of the central system's clock: set the clock from the Heartbeat answer".into(),
    ))
}

/// Answers one CALL from `charger` (its id and how many connectors it has).
pub async fn call(
    core: &Core,
    (charger, connectors): (&str, i64),
    action: &str,
    payload: Value,
) -> Result<Value, Refusal> {
    if !core.schemas.handles(action) {
        let code = if KNOWN_UNSUPPORTED.contains(&action) {
            ErrorCode::NotSupported
        } else {
            ErrorCode::NotImplemented
        };
        return Err((
            code,
            format!("this central system does not take {:.40}", action),
        ));
    }
    core.schemas
        .check_request(action, &payload)
        .map_err(|v| (v.code, v.description))?;
    let id = charger.to_string();
    let now = crate::util::now_ms();
    match action {
        "BootNotification" => {
            let b: t::BootNotificationRequest = typed(payload)?;
            core.store
                .write(move |c| {
                    let boot = Boot {
                        vendor: b.charge_point_vendor.as_str(),
                        model: b.charge_point_model.as_str(),
                        serial: b.charge_point_serial_number.as_deref(),
                        firmware: b.firmware_version.as_deref(),
                    };
                    store::booted(c, &id, &boot, now)
                })
                .await
                .map_err(internal)?;
            Ok(json!({"status": "Accepted", "currentTime": now_text(),
                      "interval": core.cfg.heartbeat_interval_s}))
        }
        "Heartbeat" => {
            core.store
                .write(move |c| store::seen(c, &id, now))
                .await
                .map_err(internal)?;
            Ok(json!({"currentTime": now_text()}))
        }
        "StatusNotification" => {
            let s: t::StatusNotificationRequest = typed(payload)?;
            connector(s.connector_id, connectors, true)?;
            let st = ConnectorStatus {
                charger_id: id,
                connector_id: s.connector_id,
                status: name(&s.status),
                error_code: name(&s.error_code),
                info: s.info.as_deref().map(String::from),
                status_ms: s
                    .timestamp
                    .as_ref()
                    .map_or(now, when)
                    .min(now + 10 * 60_000),
            };
            core.store
                .write(move |c| store::set_connector(c, &st))
                .await
                .map_err(internal)?;
            Ok(json!({}))
        }
        "Authorize" => {
            let a: t::AuthorizeRequest = typed(payload)?;
            let status = core.tag_status(a.id_tag.as_str()).await.map_err(internal)?;
            Ok(json!({"idTagInfo": {"status": status}}))
        }
        "StartTransaction" => {
            let s: t::StartTransactionRequest = typed(payload)?;
            connector(s.connector_id, connectors, false)?;
            register(s.meter_start)?;
            not_ahead(&s.timestamp)?;
            start(core, id, s).await
        }
        "StopTransaction" => {
            let s: t::StopTransactionRequest = typed(payload)?;
            transaction_id(s.transaction_id)?;
            register(s.meter_stop)?;
            not_ahead(&s.timestamp)?;
            stop(core, id, s).await
        }
        "MeterValues" => {
            let m: t::MeterValuesRequest = typed(payload)?;
            connector(m.connector_id, connectors, true)?;
            if let Some(t) = m.transaction_id {
                transaction_id(t)?;
            }
            meter_values(core, id, m).await
        }
        "DataTransfer" => {
            let d: t::DataTransferRequest = typed(payload)?;
            if DATA_TRANSFER.allow() {
                tracing::info!(charger = %id, vendor = ?d.vendor_id.as_str(), "charger sent a DataTransfer");
            }
            Ok(json!({"status": "UnknownVendorId"}))
        }
        "DiagnosticsStatusNotification" | "FirmwareStatusNotification" => {
            let status = payload["status"].as_str().unwrap_or_default().to_string();
            let column = if action == "FirmwareStatusNotification" {
                "firmware_status"
            } else {
                "diagnostics_status"
            };
            core.store
                .write(move |c| store::set_charger_status(c, &id, column, &status))
                .await
                .map_err(internal)?;
            Ok(json!({}))
        }
        _ => Err((
            ErrorCode::NotImplemented,
            format!("{action:.40} is not handled"),
        )),
    }
}

async fn start(core: &Core, id: String, s: t::StartTransactionRequest) -> Result<Value, Refusal> {
    let tag = s.id_tag.as_str().to_string();
    let vehicle = core.vehicle_of_tag(&tag).await.map_err(internal)?;
    let status = core.status_for(vehicle.is_some());
    let actor = core.actor.clone();
    let tx = core
        .store
        .write(move |c| {
            let t = c.transaction()?;
            let (tx, closed) = sessions::start(
                &t,
                &Start {
                    charger: &id,
                    connector: s.connector_id,
                    id_tag: &tag,
                    vehicle: vehicle.as_deref(),
                    meter_start_wh: s.meter_start,
                    ts_ms: when(&s.timestamp),
                },
            )?;
            // Transactions this start closed (their stop never came) reach the cloud too.
            for old in closed.into_iter().chain([tx]) {
                records::publish(&t, &actor, old)?;
            }
            t.commit()?;
            Ok(tx)
        })
        .await
        .map_err(internal)?;
    core.session_changed(tx);
    Ok(json!({"transactionId": tx, "idTagInfo": {"status": status}}))
}

async fn stop(core: &Core, id: String, s: t::StopTransactionRequest) -> Result<Value, Refusal> {
    let tag = s.id_tag.as_ref().map(|t| t.as_str().to_string());
    let vehicle = match &tag {
        Some(t) => core.vehicle_of_tag(t).await.map_err(internal)?,
        None => None,
    };
    let data: Vec<Sample> = s
        .transaction_data
        .iter()
        .flatten()
        .flat_map(|m| samples(&m.timestamp, &m.sampled_value))
        .collect();
    let status = core.status_for(vehicle.is_some());
    let reason = s.reason.as_ref().map_or_else(|| "Local".to_string(), name);
    let actor = core.actor.clone();
    let tx = core
        .store
        .write(move |c| {
            let t = c.transaction()?;
            let tx = sessions::stop(
                &t,
                &Stop {
                    charger: &id,
                    charger_tx_id: s.transaction_id,
                    meter_stop_wh: s.meter_stop,
                    ts_ms: when(&s.timestamp),
                    reason: &reason,
                    id_tag: tag.as_deref(),
                    vehicle: vehicle.as_deref(),
                },
                &data,
            )?;
            records::publish(&t, &actor, tx)?;
            t.commit()?;
            Ok(tx)
        })
        .await
        .map_err(internal)?;
    core.session_changed(tx);
    // idTagInfo is optional when the stop carried no idTag.
    Ok(match s.id_tag {
        Some(_) => json!({"idTagInfo": {"status": status}}),
        None => json!({}),
    })
}

async fn meter_values(core: &Core, id: String, m: t::MeterValuesRequest) -> Result<Value, Refusal> {
    let all: Vec<Sample> = m
        .meter_value
        .iter()
        .flat_map(|v| samples(&v.timestamp, &v.sampled_value))
        .collect();
    let over = over_profile(core, &id, m.connector_id, m.transaction_id, &all);
    let first = over.first().cloned();
    let (tx, n, raised) = core
        .store
        .write(move |c| {
            let t = c.transaction()?;
            let (tx, n) = sessions::meter_values(&t, &id, m.connector_id, m.transaction_id, &all)?;
            let mut raised = 0;
            for a in &over {
                raised += usize::from(store::raise(&t, a)?);
            }
            t.commit()?;
            Ok((tx, n, raised))
        })
        .await
        .map_err(internal)?;
    core.metrics.samples.inc_by(n as u64);
    if raised > 0 {
        core.metrics.over_profile.inc_by(raised as u64);
        if let Some(a) = first.filter(|_| OVER_PROFILE.allow()) {
            tracing::warn!(charger = %a.charger_id, connector = a.connector_id,
                limit_w = a.limit_w, drawn_w = a.drawn_w,
                "charger draws more than the charging profile it accepted");
        }
    }
    // Meter values do not wake the planner (it re-plans every minute anyway): a
    // charger's readings cannot flood the event bus.
    let _ = tx;
    Ok(json!({}))
}

static DATA_TRANSFER: crate::lograte::LogRate =
    crate::lograte::LogRate::info("charging.data_transfer", 10);
