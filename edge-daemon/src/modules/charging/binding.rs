//! A dispatcher binds a bus to a connector's running transaction on the Charging page:
//! the charger sent a card the edge does not know, no card at all, or the wrong bus's.
//! The binding names the transaction the dispatcher saw, so a bus that left meanwhile
//! (another transaction on the connector) is refused rather than re-bound; a bus is on at
//! most one running transaction; the change is attributed (`bound_by`) and reaches the
//! cloud in the same store transaction, and the planner re-plans for the bus's block.

use rusqlite::{params, OptionalExtension, Transaction};

use garasi_sync_protocol::actor::ActorId;

/// Why a binding was refused, in words a dispatcher can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no transaction is running on {charger} connector {connector}; reload the page")]
    NoTransaction { charger: String, connector: i64 },
    #[error("the transaction on {charger} connector {connector} is now {current}, not {asked}: the bus changed, reload the page")]
    Changed {
        charger: String,
        connector: i64,
        asked: i64,
        current: i64,
    },
    #[error(
        "{vehicle} is already charging on {charger} connector {connector}; unbind it there first"
    )]
    Elsewhere {
        vehicle: String,
        charger: String,
        connector: i64,
    },
}

/// What a dispatcher asked: bind `vehicle` (None: unbind) to transaction `tx` running on
/// the connector.
pub struct Bind<'a> {
    pub charger: &'a str,
    pub connector: i64,
    pub tx: i64,
    pub vehicle: Option<&'a str>,
    pub by: &'a str,
}

/// Binds in the caller's transaction; the outer error is the store's, the inner one the
/// dispatcher's. Binding what is already bound changes nothing and queues nothing.
pub(super) fn bind(
    t: &Transaction<'_>,
    actor: &ActorId,
    b: &Bind<'_>,
) -> rusqlite::Result<Result<(), Refused>> {
    let current: Option<i64> = t
        .query_row(
            "SELECT id FROM charging_transactions
             WHERE charger_id = ?1 AND connector_id = ?2 AND stop_ms IS NULL AND origin = 'start'
             ORDER BY id DESC LIMIT 1",
            params![b.charger, b.connector],
            |r| r.get(0),
        )
        .optional()?;
    match current {
        None => {
            return Ok(Err(Refused::NoTransaction {
                charger: b.charger.into(),
                connector: b.connector,
            }))
        }
        Some(c) if c != b.tx => {
            return Ok(Err(Refused::Changed {
                charger: b.charger.into(),
                connector: b.connector,
                asked: b.tx,
                current: c,
            }))
        }
        Some(_) => {}
    }
    if let Some(v) = b.vehicle {
        let other: Option<(String, i64)> = t
            .query_row(
                "SELECT charger_id, connector_id FROM charging_transactions
                 WHERE vehicle_id = ?1 AND stop_ms IS NULL AND origin = 'start' AND id <> ?2
                 LIMIT 1",
                params![v, b.tx],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((charger, connector)) = other {
            return Ok(Err(Refused::Elsewhere {
                vehicle: v.into(),
                charger,
                connector,
            }));
        }
    }
    let changed = t.execute(
        "UPDATE charging_transactions SET vehicle_id = ?2, bound_by = ?3
         WHERE id = ?1 AND vehicle_id IS NOT ?2",
        params![b.tx, b.vehicle, b.by],
    )?;
    if changed > 0 {
        super::records::publish(t, actor, b.tx)?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::charging::sessions::{self, Start};

    fn db() -> rusqlite::Connection {
        let mut c = crate::modules::charging::store::test_db();
        let t = c.transaction().unwrap();
        for (charger, connector, tag, wh) in [("CP-1", 1, "card-9", 100), ("CP-1", 2, "bus-2", 200)]
        {
            sessions::start(
                &t,
                &Start {
                    charger,
                    connector,
                    id_tag: tag,
                    vehicle: (tag == "bus-2").then_some("bus-2"),
                    meter_start_wh: wh,
                    ts_ms: 1_000,
                },
            )
            .unwrap();
        }
        t.commit().unwrap();
        c
    }

    fn try_bind(
        c: &mut rusqlite::Connection,
        connector: i64,
        tx: i64,
        v: Option<&str>,
    ) -> Result<(), Refused> {
        let actor =
            garasi_sync_protocol::actor::new_actor(garasi_sync_protocol::actor::Side::Depot);
        let t = c.transaction().unwrap();
        let b = Bind {
            charger: "CP-1",
            connector,
            tx,
            vehicle: v,
            by: "ani",
        };
        let r = bind(&t, &actor, &b).unwrap();
        t.commit().unwrap();
        r
    }

    fn outbox(c: &rusqlite::Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM sync_outbox", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_bus_is_bound_attributed_and_queued_once() {
        let mut c = db();
        let before = outbox(&c);
        try_bind(&mut c, 1, 1, Some("bus-1")).unwrap();
        let s = sessions::session(&c, 1).unwrap().unwrap();
        assert_eq!(
            (s.vehicle_id.as_deref(), s.bound_by.as_deref()),
            (Some("bus-1"), Some("ani"))
        );
        assert_eq!(
            s.id_tag.as_deref(),
            Some("card-9"),
            "the card read stays on record"
        );
        let after = outbox(&c);
        assert!(after > before, "the binding is queued for the cloud");
        // The same binding again (a double click, a replayed request) queues nothing.
        try_bind(&mut c, 1, 1, Some("bus-1")).unwrap();
        assert_eq!(outbox(&c), after);
    }

    #[test]
    fn a_stop_keeps_what_the_dispatcher_unbound() {
        let mut c = db();
        // The dispatcher unbinds bus-2 (its card was read by mistake); the stop that
        // carries the same card does not put it back.
        try_bind(&mut c, 2, 2, None).unwrap();
        let stop = sessions::Stop {
            charger: "CP-1",
            charger_tx_id: 2,
            meter_stop_wh: 900,
            ts_ms: 5_000,
            reason: "Local",
            id_tag: Some("bus-2"),
            vehicle: Some("bus-2"),
        };
        let t = c.transaction().unwrap();
        sessions::stop(&t, &stop, &[]).unwrap();
        t.commit().unwrap();
        assert_eq!(sessions::session(&c, 2).unwrap().unwrap().vehicle_id, None);
    }

    #[test]
    fn a_stale_page_a_missing_transaction_and_a_bus_already_charging_are_refused() {
        let mut c = db();
        assert!(matches!(
            try_bind(&mut c, 1, 2, Some("bus-1")),
            Err(Refused::Changed { current: 1, .. })
        ));
        assert!(matches!(
            try_bind(&mut c, 3, 1, Some("bus-1")),
            Err(Refused::NoTransaction { .. })
        ));
        assert_eq!(
            try_bind(&mut c, 1, 1, Some("bus-2")),
            Err(Refused::Elsewhere {
                vehicle: "bus-2".into(),
                charger: "CP-1".into(),
                connector: 2
            })
        );
        // Unbinding it there frees it to be bound here.
        try_bind(&mut c, 2, 2, None).unwrap();
        try_bind(&mut c, 1, 1, Some("bus-2")).unwrap();
        assert_eq!(sessions::session(&c, 2).unwrap().unwrap().vehicle_id, None);
        assert_eq!(
            sessions::session(&c, 1)
                .unwrap()
                .unwrap()
                .vehicle_id
                .as_deref(),
            Some("bus-2")
        );
    }
}
