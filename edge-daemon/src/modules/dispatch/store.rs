//! dispatch's table, `dispatch_records`: every record dispatch owns, one row each, with
//! its visible fields as JSON and (for operational records) its automerge document.
//! Master records (block, stop, shape) keep their documents in sync's generic store;
//! operational ones (assignment, signon, dispatch_event) are edited here, and every edit
//! appends its change to the sync outbox in the same transaction.

use std::collections::HashMap;

use garasi_sync_protocol::actor::ActorId;
use garasi_sync_protocol::record::{FieldValue, Record};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::plan::{Assignment, Block, Trip};
use super::{ASSIGNMENT_RECORD, BLOCK_RECORD, EVENT_RECORD, SIGNON_RECORD, STOP_RECORD};

fn rec_err(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

/// Visible fields as JSON (`FieldValue` serialises untagged: null, bool, number, text).
fn to_json(f: &std::collections::BTreeMap<String, FieldValue>) -> serde_json::Value {
    serde_json::to_value(f).unwrap_or_default()
}

fn upsert(
    tx: &Connection,
    record_type: &str,
    id: &str,
    doc: Option<Vec<u8>>,
    fields: &serde_json::Value,
) -> rusqlite::Result<()> {
    let date = fields["service_date"].as_str();
    tx.execute(
        "INSERT INTO dispatch_records (record_type, record_id, service_date, doc, fields, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(record_type, record_id) DO UPDATE SET service_date = excluded.service_date,
           doc = coalesce(excluded.doc, dispatch_records.doc), fields = excluded.fields,
           updated_ms = excluded.updated_ms",
        params![record_type, id, date, doc, fields.to_string(), crate::util::now_ms()],
    )?;
    Ok(())
}

/// The cloud's master data for a block, stop or shape (sync transaction).
pub(super) fn apply_master(
    tx: &Transaction<'_>,
    record_type: &str,
    id: &str,
    changes: &[Vec<u8>],
) -> Result<(), String> {
    let f = super::super::sync::apply_master(tx, record_type, id, changes)?;
    upsert(tx, record_type, id, None, &to_json(&f)).map_err(|e| e.to_string())
}

fn load_doc(tx: &Connection, actor: &ActorId, t: &str, id: &str) -> rusqlite::Result<Record> {
    let doc: Option<Option<Vec<u8>>> = tx
        .query_row(
            "SELECT doc FROM dispatch_records WHERE record_type = ?1 AND record_id = ?2",
            params![t, id],
            |r| r.get(0),
        )
        .optional()?;
    match doc.flatten() {
        Some(b) => Record::load(&b, actor.clone()).map_err(rec_err),
        None => Ok(Record::new(actor.clone())),
    }
}

/// Changes pulled back for an operational record (the depot's own, or a cloud edit).
pub(super) fn apply_operational(
    tx: &Transaction<'_>,
    actor: &ActorId,
    record_type: &str,
    id: &str,
    changes: &[Vec<u8>],
) -> Result<(), String> {
    let mut r = load_doc(tx, actor, record_type, id).map_err(|e| e.to_string())?;
    r.apply_in_order(changes).map_err(|e| e.to_string())?;
    let f = to_json(&r.visible().map_err(|e| e.to_string())?);
    upsert(tx, record_type, id, Some(r.save()), &f).map_err(|e| e.to_string())
}

/// Edits an operational record: document, visible fields and outbox in the caller's
/// transaction. Returns the visible fields.
pub(super) fn edit(
    tx: &Transaction<'_>,
    actor: &ActorId,
    record_type: &str,
    id: &str,
    service_date: &str,
    values: &[(&str, FieldValue)],
) -> rusqlite::Result<serde_json::Value> {
    let mut r = load_doc(tx, actor, record_type, id)?;
    let mut values = values.to_vec();
    if !values.iter().any(|(k, _)| *k == "service_date") {
        values.push(("service_date", FieldValue::Text(service_date.into())));
    }
    let change = r.set(&values).map_err(rec_err)?;
    let f = to_json(&r.visible().map_err(rec_err)?);
    upsert(tx, record_type, id, Some(r.save()), &f)?;
    if let Some(change) = change {
        super::super::sync::append_change(tx, record_type, id, &change)?;
    }
    Ok(f)
}

pub(super) fn fields(
    c: &Connection,
    record_type: &str,
    id: &str,
) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = c
        .query_row(
            "SELECT fields FROM dispatch_records WHERE record_type = ?1 AND record_id = ?2",
            params![record_type, id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

fn rows_of_day(
    c: &Connection,
    record_type: &str,
    date: &str,
) -> rusqlite::Result<Vec<(String, serde_json::Value)>> {
    let mut st = c.prepare_cached(
        "SELECT record_id, fields FROM dispatch_records WHERE record_type = ?1 AND service_date = ?2 ORDER BY record_id",
    )?;
    let rows = st.query_map(params![record_type, date], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, f) = row?;
        if let Ok(v) = serde_json::from_str(&f) {
            out.push((id, v));
        }
    }
    Ok(out)
}

fn block_of(id: String, v: &serde_json::Value) -> Option<Block> {
    let mut b: Block = serde_json::from_value(v.clone()).ok()?;
    b.id = id;
    b.trips = v["trips"]
        .as_str()
        .and_then(|t| serde_json::from_str::<Vec<Trip>>(t).ok())
        .unwrap_or_default();
    Some(b)
}

/// One service day: blocks by pull-out time, assignments by block record id, sign-ons,
/// events by time.
pub(super) struct Day {
    pub blocks: Vec<Block>,
    pub assignments: HashMap<String, Assignment>,
    pub signons: Vec<serde_json::Value>,
    pub events: Vec<serde_json::Value>,
}

pub(super) fn load_day(c: &Connection, date: &str) -> rusqlite::Result<Day> {
    let mut blocks: Vec<Block> = rows_of_day(c, BLOCK_RECORD, date)?
        .into_iter()
        .filter_map(|(id, v)| block_of(id, &v))
        .collect();
    blocks.sort_by(|a, b| (a.pull_out_ms, &a.block).cmp(&(b.pull_out_ms, &b.block)));
    let assignments = rows_of_day(c, ASSIGNMENT_RECORD, date)?
        .into_iter()
        .filter_map(|(id, v)| Some((id, serde_json::from_value(v).ok()?)))
        .collect();
    let signons = rows_of_day(c, SIGNON_RECORD, date)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut events: Vec<serde_json::Value> = rows_of_day(c, EVENT_RECORD, date)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    events.sort_by_key(|e| e["at_ms"].as_i64().unwrap_or(0));
    Ok(Day {
        blocks,
        assignments,
        signons,
        events,
    })
}

/// Writes assignment edits for blocks of `date` in one transaction; blocks that are not
/// in the day's plan are skipped. Returns how many were written.
pub(super) fn assign(
    c: &mut Connection,
    actor: &ActorId,
    date: &str,
    edits: &[(String, Vec<(&'static str, FieldValue)>)],
) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    let now = crate::util::now_ms();
    let mut n = 0;
    for (block, values) in edits {
        match fields(&tx, BLOCK_RECORD, block)? {
            Some(b) if b["service_date"].as_str() == Some(date) => {}
            _ => continue,
        }
        let mut v = values.clone();
        v.push(("assigned_ms", FieldValue::Int(now)));
        edit(&tx, actor, ASSIGNMENT_RECORD, block, date, &v)?;
        n += 1;
    }
    tx.commit()?;
    Ok(n)
}

/// What every dispatch event says.
struct Ev<'a> {
    date: &'a str,
    kind: &'a str,
    block: &'a str,
    vehicle: &'a str,
    at_ms: i64,
}

fn event(
    tx: &Transaction<'_>,
    actor: &ActorId,
    e: Ev<'_>,
    extra: &[(&str, FieldValue)],
) -> rusqlite::Result<serde_json::Value> {
    let Ev {
        date,
        kind,
        block,
        vehicle,
        at_ms,
    } = e;
    let mut raw = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let id = format!("ev-{at_ms}-{}", hex::encode(raw));
    let mut values = vec![
        ("kind", FieldValue::Text(kind.into())),
        ("block", FieldValue::Text(block.into())),
        ("vehicle", FieldValue::Text(vehicle.into())),
        ("at_ms", FieldValue::Int(at_ms)),
    ];
    values.extend(extra.iter().cloned());
    edit(tx, actor, EVENT_RECORD, &id, date, &values)
}

/// Assignments of `vehicle` on these days with their blocks.
fn vehicle_assignments(
    tx: &Connection,
    dates: &[String],
    vehicle: &str,
) -> rusqlite::Result<Vec<(Block, Assignment)>> {
    let mut out = Vec::new();
    for date in dates {
        for (id, v) in rows_of_day(tx, ASSIGNMENT_RECORD, date)? {
            if v["vehicle"].as_str() != Some(vehicle) {
                continue;
            }
            let Ok(a) = serde_json::from_value::<Assignment>(v) else {
                continue;
            };
            if let Some(b) = fields(tx, BLOCK_RECORD, &id)?.and_then(|f| block_of(id, &f)) {
                out.push((b, a));
            }
        }
    }
    Ok(out)
}

/// Records a pull-out or pull-in of `vehicle` at `ts`: the assignment it belongs to is
/// the one not yet pulled out (in) whose pull-out (in) time is nearest. Returns the
/// block, or None when no assignment matches (a yard move, an unplanned trip).
pub(super) fn pull_event(
    c: &mut Connection,
    actor: &ActorId,
    dates: &[String],
    vehicle: &str,
    out: bool,
    ts: i64,
    late_grace_ms: i64,
) -> rusqlite::Result<Option<String>> {
    let tx = c.transaction()?;
    let candidates = vehicle_assignments(&tx, dates, vehicle)?;
    let pick = candidates
        .into_iter()
        .filter(|(b, a)| {
            if out {
                a.pull_out_actual_ms.is_none() && b.pull_in_ms > ts
            } else {
                a.pull_out_actual_ms.is_some() && a.pull_in_actual_ms.is_none()
            }
        })
        .min_by_key(|(b, _)| {
            if out {
                (b.pull_out_ms - ts).abs()
            } else {
                (b.pull_in_ms - ts).abs()
            }
        });
    let Some((b, _)) = pick else {
        return Ok(None);
    };
    if out {
        let late = (ts - b.pull_out_ms) / 60_000;
        let is_late = ts > b.pull_out_ms + late_grace_ms;
        edit(
            &tx,
            actor,
            ASSIGNMENT_RECORD,
            &b.id,
            &b.service_date,
            &[
                ("pull_out_actual_ms", FieldValue::Int(ts)),
                (
                    "late_min",
                    if is_late {
                        FieldValue::Int(late)
                    } else {
                        FieldValue::Null
                    },
                ),
            ],
        )?;
        event(
            &tx,
            actor,
            Ev {
                date: &b.service_date,
                kind: "pull_out",
                block: &b.id,
                vehicle,
                at_ms: ts,
            },
            &[("late", FieldValue::Bool(is_late))],
        )?;
    } else {
        edit(
            &tx,
            actor,
            ASSIGNMENT_RECORD,
            &b.id,
            &b.service_date,
            &[("pull_in_actual_ms", FieldValue::Int(ts))],
        )?;
        event(
            &tx,
            actor,
            Ev {
                date: &b.service_date,
                kind: "pull_in",
                block: &b.id,
                vehicle,
                at_ms: ts,
            },
            &[],
        )?;
    }
    tx.commit()?;
    Ok(Some(b.id))
}

/// Flags every unfinished block of `vehicle` as disrupted. Returns how many.
pub(super) fn disrupt(
    c: &mut Connection,
    actor: &ActorId,
    dates: &[String],
    vehicle: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    let mut n = 0;
    for (b, a) in vehicle_assignments(&tx, dates, vehicle)? {
        if a.pull_in_actual_ms.is_some() || b.pull_in_ms <= now || a.disrupted_ms.is_some() {
            continue;
        }
        edit(
            &tx,
            actor,
            ASSIGNMENT_RECORD,
            &b.id,
            &b.service_date,
            &[
                ("disrupted_ms", FieldValue::Int(now)),
                ("disruption", FieldValue::Text(reason.into())),
            ],
        )?;
        event(
            &tx,
            actor,
            Ev {
                date: &b.service_date,
                kind: "out_of_service",
                block: &b.id,
                vehicle,
                at_ms: now,
            },
            &[("reason", FieldValue::Text(reason.into()))],
        )?;
        n += 1;
    }
    tx.commit()?;
    Ok(n)
}

/// Replaces a block's vehicle, clears its disruption and records the swap.
/// `Ok(Err(msg))` when the block has no vehicle to swap.
pub(super) fn swap(
    c: &mut Connection,
    actor: &ActorId,
    date: &str,
    block: &str,
    vehicle: &str,
    reason: Option<&str>,
    by: &str,
) -> rusqlite::Result<Result<serde_json::Value, String>> {
    let tx = c.transaction()?;
    let Some(a) = fields(&tx, ASSIGNMENT_RECORD, block)? else {
        return Ok(Err(format!(
            "block {block} has no assignment to swap: assign it instead"
        )));
    };
    if a["service_date"].as_str() != Some(date) {
        return Ok(Err(format!("block {block} is not in the plan for {date}")));
    }
    let Some(old) = a["vehicle"].as_str().map(String::from) else {
        return Ok(Err(format!(
            "block {block} has no vehicle to swap: assign it instead"
        )));
    };
    if old == vehicle {
        return Ok(Err(format!("{vehicle} already runs block {block}")));
    }
    let now = crate::util::now_ms();
    edit(
        &tx,
        actor,
        ASSIGNMENT_RECORD,
        block,
        date,
        &[
            ("vehicle", FieldValue::Text(vehicle.into())),
            ("swapped_from", FieldValue::Text(old.clone())),
            ("disrupted_ms", FieldValue::Null),
            ("disruption", FieldValue::Null),
            ("assigned_by", FieldValue::Text(by.into())),
            ("assigned_ms", FieldValue::Int(now)),
        ],
    )?;
    let ev = event(
        &tx,
        actor,
        Ev {
            date,
            kind: "swap",
            block,
            vehicle,
            at_ms: now,
        },
        &[
            ("from_vehicle", FieldValue::Text(old)),
            ("by", FieldValue::Text(by.into())),
            (
                "reason",
                reason
                    .map(|r| FieldValue::Text(r.chars().take(200).collect()))
                    .unwrap_or(FieldValue::Null),
            ),
        ],
    )?;
    tx.commit()?;
    Ok(Ok(ev))
}

pub(super) struct Card {
    pub signed_on_today: bool,
    /// Block, assignment, stop record id -> stop name.
    pub items: Vec<(Block, Assignment, HashMap<String, String>)>,
}

/// A driver's assignments on these days (first date = today), with stop names.
pub(super) fn driver_card(
    c: &Connection,
    dates: &[String],
    person: &str,
) -> rusqlite::Result<Card> {
    let mut items = Vec::new();
    for date in dates {
        for (id, v) in rows_of_day(c, ASSIGNMENT_RECORD, date)? {
            if v["driver"].as_str() != Some(person) {
                continue;
            }
            let Ok(a) = serde_json::from_value::<Assignment>(v) else {
                continue;
            };
            let Some(b) = fields(c, BLOCK_RECORD, &id)?.and_then(|f| block_of(id, &f)) else {
                continue;
            };
            let mut stops = HashMap::new();
            for t in &b.trips {
                for s in [&t.from, &t.to] {
                    if !stops.contains_key(s) {
                        if let Some(name) = fields(c, STOP_RECORD, s)?
                            .and_then(|f| f["name"].as_str().map(String::from))
                        {
                            stops.insert(s.clone(), name);
                        }
                    }
                }
            }
            items.push((b, a, stops));
        }
    }
    items.sort_by_key(|(b, _, _)| b.pull_out_ms);
    let signed_on_today = match dates.first() {
        Some(d) => fields(c, SIGNON_RECORD, &format!("{d}-{person}"))?.is_some(),
        None => false,
    };
    Ok(Card {
        signed_on_today,
        items,
    })
}

/// Great-circle distance in metres.
pub(super) fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let dla = la2 - la1;
    let dlo = (b.1 - a.1).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// A block given locally (a depot without a cloud, the demo, tests and benchmarks).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LocalBlock {
    pub id: String,
    pub service_date: String,
    pub block: String,
    pub routes: String,
    pub pull_out_ms: i64,
    pub pull_in_ms: i64,
    pub distance_km: f64,
    #[serde(default)]
    pub vehicle_type: Option<String>,
    #[serde(default)]
    pub trips: Vec<Trip>,
}

/// Stores blocks given locally, as the cloud's master data would (not synced: on an
/// enrolled depot the cloud's records replace them).
pub fn import_local_blocks(
    store: &crate::store::Store,
    blocks: &[LocalBlock],
) -> Result<usize, crate::store::StoreCallError> {
    let blocks = blocks.to_vec();
    store.write_blocking(move |c| {
        let tx = c.transaction()?;
        for b in &blocks {
            let first = b.trips.first().map(|t| t.start_ms).unwrap_or(b.pull_out_ms);
            let last = b.trips.last().map(|t| t.end_ms).unwrap_or(b.pull_in_ms);
            let f = serde_json::json!({
                "service_date": b.service_date,
                "block": b.block,
                "built": false,
                "routes": b.routes,
                "pull_out_ms": b.pull_out_ms,
                "pull_in_ms": b.pull_in_ms,
                "first_departure_ms": first,
                "last_arrival_ms": last,
                "distance_km": b.distance_km,
                "vehicle_type": b.vehicle_type,
                "trips": serde_json::to_string(&b.trips).unwrap_or_else(|_| "[]".into()),
            });
            upsert(&tx, BLOCK_RECORD, &b.id, None, &f)?;
        }
        tx.commit()?;
        Ok(blocks.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geofence_distance() {
        // 0.001 degree of latitude is ~111 m.
        let d = distance_m((-6.2, 106.8), (-6.201, 106.8));
        assert!((d - 111.2).abs() < 1.0, "{d}");
    }
}
