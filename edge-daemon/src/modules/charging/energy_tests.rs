//! The tariff and a day's energy by band, checked by hand.
use super::*;

fn tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Jakarta").unwrap()
}

/// ms of a Jakarta wall-clock time on Friday 2026-11-27.
fn at(h: i8, m: i8) -> i64 {
    jiff::civil::date(2026, 11, 27)
        .at(h, m, 0, 0)
        .to_zoned(tz())
        .unwrap()
        .timestamp()
        .as_millisecond()
}

#[test]
fn a_day_by_band_checked_by_hand() {
    let t = Tariff::default();
    assert!(t.problems().is_empty(), "{:?}", t.problems());
    // 15:00 100 kWh, 16:00 112.5, 17:00 120, 18:00 150, 22:00 200, 23:00 201.
    let r = [
        (at(15, 0), 100_000),
        (at(16, 0), 112_500),
        (at(17, 0), 120_000),
        (at(18, 0), 150_000),
        (at(22, 0), 200_000),
        (at(23, 0), 201_000),
    ];
    let day = totals(&r, at(0, 0), at(0, 0) + 86_400_000, &t, &tz());
    // Midpoints 15:30 and 16:30 LWBP (12.5 + 7.5 = 20 kWh), 17:30 and 20:00 WBP
    // (30 + 50 = 80 kWh), 22:30 LWBP (1 kWh): LWBP 21 kWh, WBP 80 kWh.
    let band = |n: &str| day.bands.iter().find(|b| b.band == n).unwrap().clone();
    assert_eq!(
        (band("LWBP").wh, band("WBP").wh, day.wh),
        (21_000, 80_000, 101_000)
    );
    // 21 kWh x Rp 1.035,78 = Rp 21.751,38; 80 kWh x Rp 1.553,67 = Rp 124.293,60.
    assert_eq!(band("LWBP").cost_sen, 2_175_138);
    assert_eq!(band("WBP").cost_sen, 12_429_360);
    assert_eq!(day.cost_sen, 14_604_498);
    assert_eq!(rupiah(day.cost_sen), "Rp 146.044,98");
}

#[test]
fn resets_days_and_weekend_bands() {
    let t = Tariff::default();
    // A meter replaced at 12:00 (register back to 5 kWh, and staying low): its own
    // rises count once three readings agree, nothing is invented.
    let r = [
        (at(10, 0), 900_000),
        (at(11, 0), 910_000),
        (at(12, 0), 5_000),
        (at(13, 0), 8_000),
        (at(14, 0), 9_000),
        (at(15, 0), 12_000),
    ];
    assert_eq!(
        totals(&r, at(0, 0), at(23, 59), &t, &tz()).wh,
        10_000 + 3_000 + 1_000 + 3_000
    );
    // One glitch reading of 0 between two real ones adds nothing.
    let glitch = [(at(10, 0), 900_000), (at(10, 5), 0), (at(10, 10), 900_100)];
    assert_eq!(totals(&glitch, at(0, 0), at(23, 59), &t, &tz()).wh, 100);
    // A rise faster than 10 MW is not a panel's: dropped.
    let jump = [(at(10, 0), 0), (at(10, 1), 1_000_000_000_000)];
    assert_eq!(totals(&jump, at(0, 0), at(23, 59), &t, &tz()).wh, 0);
    // An interval across midnight counts for the day of its midpoint.
    let late = [(at(23, 0), 0), (at(23, 0) + 3 * 3_600_000, 3_000)];
    assert_eq!(
        totals(&late, at(0, 0), at(0, 0) + 86_400_000, &t, &tz()).wh,
        0
    );
    assert_eq!(
        totals(
            &late,
            at(0, 0) + 86_400_000,
            at(0, 0) + 2 * 86_400_000,
            &t,
            &tz()
        )
        .wh,
        3_000
    );
    // Weekend-only peak: a weekday hour nobody covers is a problem named.
    let gap = Tariff {
        timezone: "Asia/Jakarta".into(),
        bands: vec![Band {
            name: "W".into(),
            days: Days::Weekend,
            from_hour: 0,
            to_hour: 24,
            rate_sen_per_kwh: 1,
        }],
        holidays: vec![],
    };
    assert_eq!(gap.problems().len(), 1, "{:?}", gap.problems());
    assert!(gap.problems()[0].contains("weekdays"));
    let wrap = Band {
        name: "N".into(),
        days: Days::All,
        from_hour: 22,
        to_hour: 6,
        rate_sen_per_kwh: 1,
    };
    use garasi_sync_protocol::tariff::DayType;
    assert!(
        wrap.covers(DayType::Weekday, 23)
            && wrap.covers(DayType::Weekend, 3)
            && !wrap.covers(DayType::Weekday, 12)
    );
}
