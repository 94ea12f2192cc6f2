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
use super::service::{ASSIGNMENT_RECORD, BLOCK_RECORD, EVENT_RECORD, SIGNON_RECORD, STOP_RECORD};

use crate::modules::sync::service::ApplyError;
use crate::store::migrate::Migration;

pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "dispatch records",
    sql: "CREATE TABLE dispatch_records (
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            service_date TEXT,
            doc BLOB,
            fields TEXT NOT NULL,
            updated_ms INTEGER NOT NULL,
            PRIMARY KEY (record_type, record_id)
          );
          CREATE INDEX dispatch_records_by_day ON dispatch_records (record_type, service_date);",
}];

pub(super) fn rec_err(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

/// Visible fields as JSON (`FieldValue` serialises untagged: null, bool, number, text).
pub(super) fn to_json(f: &std::collections::BTreeMap<String, FieldValue>) -> serde_json::Value {
    serde_json::to_value(f).unwrap_or_default()
}

pub(super) fn upsert(
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
) -> Result<(), ApplyError> {
    let f = crate::modules::sync::service::apply_master(tx, record_type, id, changes)?;
    upsert(tx, record_type, id, None, &to_json(&f)).map_err(ApplyError::from)
}

pub(super) fn load_doc(
    tx: &Connection,
    actor: &ActorId,
    t: &str,
    id: &str,
) -> rusqlite::Result<Record> {
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
) -> Result<(), ApplyError> {
    let mut r = load_doc(tx, actor, record_type, id).map_err(ApplyError::from)?;
    r.apply_in_order(changes).map_err(ApplyError::from)?;
    let f = to_json(&r.visible().map_err(ApplyError::from)?);
    upsert(tx, record_type, id, Some(r.save()), &f).map_err(ApplyError::from)
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
        crate::modules::sync::service::append_change(tx, record_type, id, &change)?;
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

pub(super) fn rows_of_day(
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

pub(super) fn block_of(id: String, v: &serde_json::Value) -> Option<Block> {
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
