//! Transactions against what chargers really do after outages: ids reused for offline
//! transactions, stops that fit no transaction, replays, and a start that closes a
//! transaction whose stop never came.

use rusqlite::Connection;

use super::*;

fn db() -> Connection {
    crate::modules::charging::store::test_db()
}

fn energy(ts_ms: i64, wh: f64, context: &str) -> Sample {
    Sample {
        ts_ms,
        location: String::new(),
        measurand: ENERGY.into(),
        phase: String::new(),
        context: context.into(),
        value: wh,
        unit: "Wh".into(),
    }
}

fn stop_of(tx: i64, wh: i64, ts: i64) -> Stop<'static> {
    Stop {
        charger: "CP",
        charger_tx_id: tx,
        meter_stop_wh: wh,
        ts_ms: ts,
        reason: "Local",
        id_tag: None,
        vehicle: None,
    }
}

fn stop_in(c: &mut Connection, s: &Stop<'_>, data: &[Sample]) -> i64 {
    let t = c.transaction().unwrap();
    let id = stop(&t, s, data).unwrap();
    t.commit().unwrap();
    id
}

#[test]
fn an_id_a_charger_reuses_offline_is_a_new_session_each_time() {
    let mut c = db();
    // Two offline transactions, both stopped under the charger's id -1.
    let a = stop_in(
        &mut c,
        &stop_of(-1, 2_000, 10_000),
        &[energy(1_000, 1_000.0, "Transaction.Begin")],
    );
    let b = stop_in(
        &mut c,
        &stop_of(-1, 9_000, 90_000),
        &[energy(50_000, 5_000.0, "Transaction.Begin")],
    );
    assert_ne!(a, b);
    assert_eq!(session(&c, a).unwrap().unwrap().energy_wh, Some(1_000));
    assert_eq!(session(&c, b).unwrap().unwrap().energy_wh, Some(4_000));
    // The second stop again (its answer lost): still two sessions, nothing changed.
    let again = stop_in(&mut c, &stop_of(-1, 9_000, 90_000), &[]);
    assert_eq!(again, b);
    assert_eq!(sessions(&c, 0).unwrap().len(), 2);
}

#[test]
fn a_stop_that_does_not_fit_the_open_transaction_with_its_id_does_not_end_it() {
    let mut c = db();
    let start_at = |c: &Connection, connector, wh, ts| {
        start(
            c,
            &Start {
                charger: "CP",
                connector,
                id_tag: "t",
                vehicle: None,
                meter_start_wh: wh,
                ts_ms: ts,
            },
        )
        .unwrap()
    };
    let (tx, _) = start_at(&c, 1, 50_000, 100_000);
    // An invented id that equals it, from before it started and below its register.
    let other = stop_in(&mut c, &stop_of(tx, 20_000, 50_000), &[]);
    assert_ne!(other, tx);
    let open = session(&c, tx).unwrap().unwrap();
    assert_eq!((open.stop_ms, open.origin.as_str()), (None, "start"));
    // Its real stop still ends it.
    assert_eq!(stop_in(&mut c, &stop_of(tx, 60_000, 200_000), &[]), tx);
    assert_eq!(session(&c, tx).unwrap().unwrap().energy_wh, Some(10_000));
}

#[test]
fn a_new_start_closes_the_stale_one_at_its_last_register_and_says_so() {
    let mut c = db();
    let s = |wh, ts| Start {
        charger: "CP",
        connector: 1,
        id_tag: "t",
        vehicle: None,
        meter_start_wh: wh,
        ts_ms: ts,
    };
    let (a, closed) = start(&c, &s(1_000, 1_000)).unwrap();
    assert!(closed.is_empty());
    {
        let t = c.transaction().unwrap();
        meter_values(
            &t,
            "CP",
            1,
            Some(a),
            &[energy(2_000, 30_000.0, "Sample.Periodic")],
        )
        .unwrap();
        t.commit().unwrap();
    }
    // The charger rebooted and never stopped `a`.
    let (b, closed) = start(&c, &s(30_000, 5_000)).unwrap();
    assert_eq!(closed, vec![a]);
    let old = session(&c, a).unwrap().unwrap();
    assert_eq!(
        (old.stop_reason.as_deref(), old.energy_wh),
        (Some("NoStopReceived"), Some(29_000))
    );
    // A replay of the second start gets the same id and closes nothing more.
    assert_eq!(start(&c, &s(30_000, 5_000)).unwrap(), (b, vec![]));
}

#[test]
fn samples_of_an_unknown_transaction_wait_and_cannot_touch_another_chargers() {
    let mut c = db();
    let (mine, _) = start(
        &c,
        &Start {
            charger: "A",
            connector: 1,
            id_tag: "t",
            vehicle: None,
            meter_start_wh: 0,
            ts_ms: 0,
        },
    )
    .unwrap();
    let t = c.transaction().unwrap();
    // Charger B reports under A's transaction id: kept under a placeholder of B's.
    let (known, n) = meter_values(
        &t,
        "B",
        1,
        Some(mine),
        &[energy(10, 99_999.0, "Sample.Periodic")],
    )
    .unwrap();
    t.commit().unwrap();
    assert_eq!((known, n), (None, 1));
    assert_eq!(session(&c, mine).unwrap().unwrap().last_wh, Some(0));
    assert!(
        placeholder(i64::from(i32::MAX)) < 0 && placeholder(i64::from(i32::MIN)) < placeholder(-1)
    );
}

#[test]
fn meter_values_under_a_reused_offline_id_wait_for_their_own_stop() {
    let mut c = db();
    // Offline transaction A under -1, stopped.
    let a = stop_in(
        &mut c,
        &stop_of(-1, 2_000, 10_000),
        &[energy(1_000, 1_000.0, "Transaction.Begin")],
    );
    // Transaction B reuses -1: its readings must not land on A.
    {
        let t = c.transaction().unwrap();
        let (known, n) = meter_values(
            &t,
            "CP",
            1,
            Some(-1),
            &[energy(50_000, 5_000.0, "Sample.Periodic")],
        )
        .unwrap();
        t.commit().unwrap();
        assert_eq!((known, n), (None, 1));
    }
    assert_eq!(session(&c, a).unwrap().unwrap().energy_wh, Some(1_000));
    let b = stop_in(&mut c, &stop_of(-1, 9_000, 90_000), &[]);
    assert_ne!(a, b);
    // B starts at its own first reading: 5,000 -> 9,000.
    assert_eq!(session(&c, b).unwrap().unwrap().energy_wh, Some(4_000));
}
