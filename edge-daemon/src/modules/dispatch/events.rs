//! The day's operational events in dispatch's table: pull-out and pull-in records,
//! disruption of a vehicle's blocks, and swaps.

use garasi_sync_protocol::actor::ActorId;
use rusqlite::{Connection, Transaction};

use super::plan::{Assignment, Block};
use super::service::BLOCK_RECORD;
use super::service::{ASSIGNMENT_RECORD, EVENT_RECORD};
use super::store::{block_of, edit, fields, rows_of_day};
use garasi_sync_protocol::record::FieldValue;

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

/// Great-circle distance in metres.
pub(super) fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let dla = la2 - la1;
    let dlo = (b.1 - a.1).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
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
