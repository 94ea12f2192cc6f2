//! Unit tests of the dispatch decisions.

use super::*;

const H: i64 = 3_600_000;

fn block(id: &str, from_h: i64, to_h: i64, km: f64) -> Block {
    Block {
        id: id.into(),
        service_date: "2026-11-22".into(),
        block: id.into(),
        pull_out_ms: from_h * H,
        pull_in_ms: to_h * H,
        distance_km: km,
        ..Default::default()
    }
}

fn bus(id: &str, soc: Option<f64>) -> VehicleState {
    VehicleState {
        id: id.into(),
        label: id.into(),
        battery_kwh: 300.0,
        kwh_per_km: Some(1.0),
        soc_pct: soc,
        ..Default::default()
    }
}

#[test]
fn energy_and_forecast() {
    let p = Params::default();
    let v = bus("a", Some(50.0));
    assert!(
        (energy_kwh(100.0, Some(&v), &p) - 130.0).abs() < 1e-9,
        "100 km x 1.0 + 10% of 300"
    );
    assert_eq!(
        forecast_soc(&v, 10 * H, 0, &p),
        Some(50.0),
        "not charging: as reported"
    );
    let charging = VehicleState {
        charging: true,
        ..v.clone()
    };
    // 60 kW for 2 h = 120 kWh = 40 % of 300 kWh.
    assert_eq!(forecast_soc(&charging, 2 * H, 0, &p), Some(90.0));
    assert_eq!(
        forecast_soc(&charging, 10 * H, 0, &p),
        Some(100.0),
        "capped"
    );
    assert_eq!(forecast_soc(&bus("b", None), H, 0, &p), None);
}

#[test]
fn the_forecast_follows_the_charging_plan_when_there_is_one() {
    let p = Params::default();
    // 30 kW for the first hour, then 90 kW until 3 h, then nothing: 30 + 180 = 210 kWh.
    let planned = VehicleState {
        charge_plan: Some(vec![(0, 30_000), (H, 90_000), (3 * H, 0)]),
        // The plan wins over the constant charger power a charging bus would get.
        charging: true,
        ..bus("a", Some(20.0))
    };
    assert_eq!(
        planned_wh(&[(0, 30_000), (H, 90_000), (3 * H, 0)], 0, 10 * H),
        210_000
    );
    // After 2 h: 30 + 90 = 120 kWh = 40 % of 300.
    assert_eq!(forecast_soc(&planned, 2 * H, 0, &p), Some(60.0));
    assert_eq!(forecast_soc(&planned, 10 * H, 0, &p), Some(90.0));
    // Half-way through, only what is still to come counts.
    assert_eq!(forecast_soc(&planned, 3 * H, 2 * H, &p), Some(50.0));
    // A bus with a plan of nothing stays where it is, even if it says it is charging.
    let idle = VehicleState {
        charge_plan: Some(vec![(0, 0)]),
        ..planned.clone()
    };
    assert_eq!(forecast_soc(&idle, 5 * H, 0, &p), Some(20.0));
}

#[test]
fn auto_assign_respects_charge_type_status_and_time() {
    let p = Params::default();
    let blocks = vec![
        block("long", 6, 14, 200.0), // needs 230 kWh
        block("short", 7, 9, 40.0),  // needs 70 kWh
        block("typed", 6, 8, 10.0),
    ];
    let mut blocks = blocks;
    blocks[2].vehicle_type = Some("18m".into());
    let vehicles = vec![
        bus("low", Some(30.0)),   // 90 kWh: short only
        bus("full", Some(100.0)), // 300 kWh: long
        VehicleState {
            status: Some("out_of_service".into()),
            ..bus("broken", Some(100.0))
        },
        VehicleState {
            vehicle_type: Some("18m".into()),
            ..bus("artic", Some(80.0))
        },
        bus("unknown", None),
    ];
    let r = auto_assign(&blocks, &HashMap::new(), &vehicles, 0, &p);
    let got: HashMap<&str, &str> = r
        .proposals
        .iter()
        .map(|x| (x.block.as_str(), x.vehicle.as_str()))
        .collect();
    assert_eq!(got.get("long"), Some(&"full"), "{r:?}");
    assert_eq!(got.get("short"), Some(&"low"), "best fit, {r:?}");
    assert_eq!(got.get("typed"), Some(&"artic"));
    for prop in &r.proposals {
        assert!(prop.available_kwh >= prop.need_kwh, "{prop:?}");
        assert_ne!(prop.vehicle, "broken");
        assert_ne!(prop.vehicle, "unknown");
    }
    assert!(r.unassigned.is_empty());
    // Not enough charge anywhere: refused with the reason.
    let r = auto_assign(
        &[block("huge", 6, 20, 400.0)],
        &HashMap::new(),
        &vehicles,
        0,
        &p,
    );
    assert!(r.proposals.is_empty());
    assert!(r.unassigned[0].1.contains("enough charge"), "{r:?}");
}

#[test]
fn a_vehicle_runs_two_blocks_only_if_it_has_energy_for_both() {
    let p = Params::default();
    let blocks = vec![block("am", 6, 9, 100.0), block("pm", 15, 18, 100.0)];
    // 300 kWh: am needs 130 (100 + 30 reserve), leaving 170 for pm which needs 130.
    let r = auto_assign(&blocks, &HashMap::new(), &[bus("one", Some(100.0))], 0, &p);
    assert_eq!(r.proposals.len(), 2, "{r:?}");
    let r = auto_assign(&blocks, &HashMap::new(), &[bus("one", Some(80.0))], 0, &p);
    assert_eq!(
        r.proposals.len(),
        1,
        "240 kWh covers one block, not both: {r:?}"
    );
}

#[test]
fn conflicts_are_flagged() {
    let p = Params::default();
    let blocks = vec![block("a", 6, 10, 100.0), block("b", 8, 12, 10.0)];
    let mut assignments = HashMap::new();
    for id in ["a", "b"] {
        assignments.insert(
            id.to_string(),
            Assignment {
                vehicle: Some("v1".into()),
                driver: Some("d1".into()),
                ..Default::default()
            },
        );
    }
    let vehicles: HashMap<String, VehicleState> = [(
        "v1".to_string(),
        VehicleState {
            status: Some("out_of_service".into()),
            ..bus("v1", Some(20.0))
        },
    )]
    .into();
    let signed = Default::default();
    let ctx = DayContext {
        blocks: &blocks,
        assignments: &assignments,
        vehicles: &vehicles,
        signed_on: &signed,
        is_today: true,
        now_ms: 6 * H + 20 * 60_000,
        params: &p,
    };
    let codes: Vec<&str> = conflicts(&blocks[0], &ctx).iter().map(|c| c.code).collect();
    for want in [
        "double_vehicle",
        "double_driver",
        "vehicle_out_of_service",
        "low_charge",
        "driver_not_signed_on",
        "late_pull_out",
    ] {
        assert!(codes.contains(&want), "{want} missing from {codes:?}");
    }
}

#[test]
fn replacements_rank_by_spare_energy_and_skip_busy_ones() {
    let p = Params::default();
    let blocks = vec![block("a", 6, 10, 50.0), block("b", 7, 9, 10.0)];
    let mut assignments = HashMap::new();
    assignments.insert(
        "a".to_string(),
        Assignment {
            vehicle: Some("x".into()),
            ..Default::default()
        },
    );
    assignments.insert(
        "b".to_string(),
        Assignment {
            vehicle: Some("busy".into()),
            ..Default::default()
        },
    );
    let vehicles = vec![
        bus("x", Some(90.0)),
        bus("busy", Some(100.0)),
        bus("mid", Some(50.0)),
        bus("top", Some(95.0)),
        bus("flat", Some(5.0)),
    ];
    let r = replacements(
        &blocks[0],
        &blocks,
        &assignments,
        &vehicles,
        6 * H,
        6 * H,
        &p,
    );
    let ids: Vec<&str> = r.iter().map(|x| x.vehicle.as_str()).collect();
    assert_eq!(ids, vec!["top", "mid"], "{r:?}");
}
