//! Unit tests of energy per km per bus (`efficiency.rs`): the figures, and when there is none.

use super::*;

fn t(a: f64, b: f64, sa: Option<f64>, sb: Option<f64>) -> Travel {
    Travel {
        first_km: a,
        last_km: b,
        first_soc_pct: sa,
        last_soc_pct: sb,
    }
}

#[test]
fn charged_plus_what_the_battery_gave_up_over_the_distance() {
    // 200 kWh charged, the 350 kWh battery from 80 % to 60 % (70 kWh more), 207.7 km.
    let f = figure(
        "b",
        200_000,
        Some(&t(1000.0, 1207.7, Some(80.0), Some(60.0))),
        350.0,
        7.0,
    );
    assert_eq!(f.used_wh, Some(270_000));
    assert_eq!(f.km, Some(207.7));
    assert_eq!(f.kwh_per_km, Some(1.3));
    // A battery fuller at the end: what went in but was not used is not counted.
    let g = figure(
        "b",
        200_000,
        Some(&t(0.0, 100.0, Some(20.0), Some(60.0))),
        350.0,
        7.0,
    );
    assert_eq!(g.kwh_per_km, Some(0.6));
}

#[test]
fn no_figure_without_distance_charge_or_with_a_glitch() {
    assert_eq!(figure("b", 1_000, None, 350.0, 7.0).kwh_per_km, None);
    // Too short a distance, no charge readings, an odometer that went back or jumped.
    assert_eq!(
        figure(
            "b",
            1_000,
            Some(&t(0.0, 2.0, Some(50.0), Some(50.0))),
            350.0,
            7.0
        )
        .kwh_per_km,
        None
    );
    assert_eq!(
        figure(
            "b",
            1_000,
            Some(&t(0.0, 200.0, None, Some(50.0))),
            350.0,
            7.0
        )
        .kwh_per_km,
        None
    );
    assert_eq!(
        figure(
            "b",
            1_000,
            Some(&t(500.0, 100.0, Some(1.0), Some(1.0))),
            350.0,
            7.0
        )
        .km,
        None
    );
    assert_eq!(
        figure(
            "b",
            1_000,
            Some(&t(0.0, 1e9, Some(1.0), Some(1.0))),
            350.0,
            7.0
        )
        .km,
        None
    );
}
