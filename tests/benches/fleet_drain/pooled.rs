//! Several runs of one fleet size pooled: a p99 of one short drain's 30-120 answers is
//! its slowest one or two, so runs of the same K (GARASI_BENCH_KS=8,8,8) are pooled
//! into one percentile over every answer, beside each run's own figures.

use serde_json::{json, Value};

use super::summary;

/// The probes' answers (ms) a run's result carries, by probe.
const PROBES: [&str; 3] = ["ops", "record", "in_turn"];

/// One pooled result per distinct K among `results` (in first-seen order), for the K
/// run more than once; each run's raw answers are taken out of `results`.
pub fn pool(results: &mut [Value]) -> Vec<Value> {
    let mut ks: Vec<u64> = Vec::new();
    for r in results.iter() {
        let k = r["k"].as_u64().unwrap_or(0);
        if !ks.contains(&k) {
            ks.push(k);
        }
    }
    let mut out = Vec::new();
    for k in ks {
        let runs: Vec<&mut Value> = results
            .iter_mut()
            .filter(|r| r["k"].as_u64() == Some(k))
            .collect();
        let n = runs.len();
        let mut answers: Vec<Vec<f64>> = vec![Vec::new(); PROBES.len()];
        let (mut cloud_n, mut cloud_over) = ([0.0; 2], [0.0; 2]);
        for r in runs {
            for (i, probe) in PROBES.iter().enumerate() {
                if let Some(v) = r["samples_ms"][probe].as_array() {
                    answers[i].extend(v.iter().filter_map(Value::as_f64));
                }
            }
            for (i, view) in ["ops_view_at_cloud", "record_view_at_cloud"]
                .iter()
                .enumerate()
            {
                cloud_n[i] += r[view]["n"].as_f64().unwrap_or(0.0);
                cloud_over[i] += r[view]["over_50ms"].as_f64().unwrap_or(0.0);
            }
            if let Some(o) = r.as_object_mut() {
                o.remove("samples_ms");
            }
        }
        if n < 2 {
            continue;
        }
        let [ops, record, in_turn] = &mut answers[..] else {
            continue;
        };
        out.push(json!({
            "k": k,
            "runs": n,
            "ops_view_ms": summary(ops),
            "record_view_ms": summary(record),
            "record_views_in_turn_ms": summary(in_turn),
            "ops_view_at_cloud": { "n": cloud_n[0], "over_50ms": cloud_over[0] },
            "record_views_at_cloud": { "n": cloud_n[1], "over_50ms": cloud_over[1] },
        }));
    }
    out
}

/// One line for a pooled result.
pub fn line(backend: &str, p: &Value) -> String {
    let f = |name: &str| {
        let v = &p[name];
        format!(
            "n {} p50 {:.1} p99 {:.1} max {:.1} ms, {} over 50 ms",
            v["n"],
            v["p50"].as_f64().unwrap_or(f64::NAN),
            v["p99"].as_f64().unwrap_or(f64::NAN),
            v["max"].as_f64().unwrap_or(f64::NAN),
            v["over_50ms"]
        )
    };
    format!(
        "{backend:8} K={:2}, {} runs pooled: ops view {}; record view {}; every depot's in turn {}; at the cloud over 50 ms: ops view {} of {}, record views {} of {}",
        p["k"],
        p["runs"],
        f("ops_view_ms"),
        f("record_view_ms"),
        f("record_views_in_turn_ms"),
        p["ops_view_at_cloud"]["over_50ms"],
        p["ops_view_at_cloud"]["n"],
        p["record_views_at_cloud"]["over_50ms"],
        p["record_views_at_cloud"]["n"],
    )
}
