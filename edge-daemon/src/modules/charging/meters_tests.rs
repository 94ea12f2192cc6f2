//! Panel meter readings: the topic map, the schema and the time forms.
use super::*;

/// The edge's clock in these tests: 2026-12-01.
const NOW: i64 = 1_796_083_200_000;

#[test]
fn topic_map_schema_and_time() {
    let schema = jsonschema::draft7::new(&serde_json::from_str::<Value>(SCHEMA).unwrap()).unwrap();
    assert_eq!(
        panel_of("DATA/PM/{id}", "DATA/PM/P-1").as_deref(),
        Some("P-1")
    );
    assert_eq!(panel_of("site/{id}/pm", "site/A/pm").as_deref(), Some("A"));
    for bad in ["DATA/PM/", "DATA/PM/a/b", "DATA/PMx/P1", "DATA/PM/a b"] {
        assert_eq!(panel_of("DATA/PM/{id}", bad), None, "{bad}");
    }
    let ok = br#"{"voltage":231.2,"current":40.1,"power_kw":27.5,"energy_kwh":1234.567,"pf":0.98,"frequency":50.0,"status":"ok","ts":1764565200}"#;
    let r = classify("DATA/PM/{id}", "DATA/PM/P-1", ok, &schema, NOW).unwrap();
    assert_eq!(
        (r.panel.as_str(), r.ts_ms, r.energy_wh, r.power_w),
        ("P-1", 1_764_565_200_000, 1_234_567, Some(27_500))
    );
    let iso = br#"{"energy_kwh":1,"ts":"2026-11-30T10:00:00+07:00"}"#;
    assert_eq!(
        classify("DATA/PM/{id}", "DATA/PM/P-1", iso, &schema, NOW)
            .unwrap()
            .ts_ms,
        1_796_007_600_000
    );
    for (bad, reason) in [
        (&br#"{"energy_kwh":"12","ts":1764565200}"#[..], "schema"),
        (br#"{"energy_kwh":-1,"ts":1764565200}"#, "schema"),
        (br#"{"power_kw":3,"ts":1764565200}"#, "schema"),
        (br#"{"energy_kwh":1,"ts":"yesterday"}"#, "schema"),
        (br#"not json"#, "json"),
        (br#"{"energy_kwh":1,"ts":"2099-01-01T00:00:00Z"}"#, "time"),
        (br#"{"energy_kwh":1,"ts":12}"#, "schema"),
    ] {
        assert_eq!(
            classify("DATA/PM/{id}", "DATA/PM/P-1", bad, &schema, NOW)
                .unwrap_err()
                .0,
            reason,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // A ts written with a fraction is the same second.
    let frac = br#"{"energy_kwh":1,"ts":1764565200.0}"#;
    assert_eq!(
        classify("DATA/PM/{id}", "DATA/PM/P-1", frac, &schema, NOW)
            .unwrap()
            .ts_ms,
        1_764_565_200_000
    );
}
