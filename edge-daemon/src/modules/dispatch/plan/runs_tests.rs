//! Tests of runs at the depot (`runs.rs`): reliefs and a run's conflicts, on hand-made
//! runs whose expected results are worked out in the comments.

use super::*;

const MIN: i64 = 60_000;

fn drive(block: &str, from: &str, to: &str, start_min: i64, end_min: i64) -> RunEvent {
    RunEvent {
        kind: "Operator".into(),
        block: Some(block.into()),
        from: from.into(),
        to: to.into(),
        start_ms: start_min * MIN,
        end_ms: end_min * MIN,
        ..Default::default()
    }
}

fn run(id: &str, events: Vec<RunEvent>) -> Run {
    Run {
        id: id.into(),
        run: id.trim_start_matches("run-").into(),
        start_ms: events.iter().map(|e| e.start_ms).min().unwrap_or(0),
        end_ms: events.iter().map(|e| e.end_ms).max().unwrap_or(0),
        events,
        ..Default::default()
    }
}

fn codes(r: &Run, runs: &[Run], drivers: &[(&str, &str)], params: &Params) -> Vec<&'static str> {
    let reliefs = reliefs(runs);
    let run_assignments: HashMap<String, RunAssignment> = drivers
        .iter()
        .map(|(r, d)| {
            (
                r.to_string(),
                RunAssignment {
                    driver: Some(d.to_string()),
                    ..Default::default()
                },
            )
        })
        .collect();
    let (assignments, signed_on) = (HashMap::new(), std::collections::HashSet::new());
    let (place, clock) = (|p: &str| p.to_string(), |ms: i64| format!("{}", ms / MIN));
    let ctx = RunContext::new(
        RunDay {
            runs,
            reliefs: &reliefs,
            run_assignments: &run_assignments,
            blocks: &[],
            assignments: &assignments,
            signed_on: &signed_on,
            is_today: false,
            now_ms: 0,
        },
        &place,
        &clock,
        params,
    );
    run_conflicts(r, &ctx).into_iter().map(|c| c.code).collect()
}

/// Block B1 from 360 to 480 min. Run 1 drives it to M at 390 (06:30); run 2 takes it at
/// M at 390: one relief, and it fits. Run 3 leaves block B2 at M at 390 and run 4 takes
/// it at B at 420: another place (and later): relief_place on both runs.
#[test]
fn reliefs_fit_or_are_flagged_on_both_runs() {
    let runs = vec![
        run("run-1", vec![drive("B1", "A", "M", 360, 390)]),
        run(
            "run-2",
            vec![
                drive("B1", "M", "B", 390, 420),
                drive("B1", "B", "A", 430, 480),
            ],
        ),
        run("run-3", vec![drive("B2", "A", "M", 360, 390)]),
        run("run-4", vec![drive("B2", "B", "A", 420, 480)]),
    ];
    let rl = reliefs(&runs);
    // Run 2's two events on B1 are one driver: no relief between them.
    assert_eq!(rl.len(), 2);
    assert!(rl[0].fits() || rl[1].fits());
    let p = Params::default();
    assert!(codes(&runs[0], &runs, &[], &p).is_empty());
    assert!(codes(&runs[1], &runs, &[], &p).is_empty());
    assert_eq!(codes(&runs[2], &runs, &[], &p), ["relief_place"]);
    assert_eq!(codes(&runs[3], &runs, &[], &p), ["relief_place"]);
}

/// Same place, but run 4 takes over at 400 after run 3 left at 390 (a gap), or at 380
/// before it left (two drivers at once).
#[test]
fn relief_times_are_checked() {
    let p = Params::default();
    for (taken, code) in [(400, "relief_gap"), (380, "relief_overlap")] {
        let runs = vec![
            run("run-3", vec![drive("B2", "A", "M", 360, 390)]),
            run("run-4", vec![drive("B2", "M", "A", taken, 480)]),
        ];
        assert_eq!(codes(&runs[1], &runs, &[], &p), [code], "taken at {taken}");
    }
}

/// One driver on runs 1 (360-390) and 3 (360-390): at the same time. On runs 1 and 2
/// (360-390, 390-480): fine, touching; with 2 h allowed, 2 h = 120 min is not over, with
/// 1 h it is.
#[test]
fn a_driver_is_on_one_run_at_a_time_and_within_hours() {
    let runs = vec![
        run("run-1", vec![drive("B1", "A", "M", 360, 390)]),
        run("run-2", vec![drive("B1", "M", "A", 390, 480)]),
        run("run-3", vec![drive("B2", "A", "B", 360, 390)]),
    ];
    let p = Params::default();
    assert_eq!(
        codes(
            &runs[0],
            &runs,
            &[("run-1", "drv-1"), ("run-3", "drv-1")],
            &p
        ),
        ["double_driver"]
    );
    let two = [("run-1", "drv-1"), ("run-2", "drv-1")];
    assert!(codes(&runs[0], &runs, &two, &p).is_empty());
    let short = Params {
        max_driver_ms: 60 * MIN,
        ..p
    };
    assert_eq!(codes(&runs[1], &runs, &two, &short), ["driver_hours"]);
}

/// The review's false alarms: a driver and a conductor on the same stretch are not a
/// relief, and a relief two minutes apart (TODS times may differ from the trip's by a
/// couple of minutes) fits.
#[test]
fn working_together_and_small_time_differences_are_not_conflicts() {
    let p = Params::default();
    let crew = vec![
        run("run-1", vec![drive("B1", "A", "B", 360, 420)]),
        run("run-2", vec![drive("B1", "A", "B", 360, 420)]),
        run("run-3", vec![drive("B1", "A", "M", 370, 400)]),
    ];
    assert!(reliefs(&crew).is_empty(), "{:?}", reliefs(&crew));
    let close = vec![
        run("run-1", vec![drive("B1", "A", "M", 360, 392)]),
        run("run-2", vec![drive("B1", "M", "B", 388, 420)]),
    ];
    assert_eq!(reliefs(&close).len(), 1);
    assert!(codes(&close[1], &close, &[], &p).is_empty());
}

/// Near its start (within the sign-on lead), a run without a driver, or whose driver has
/// not signed on, is flagged; earlier it is not.
#[test]
fn a_run_near_its_start_needs_a_signed_on_driver() {
    let runs = vec![run("run-1", vec![drive("B1", "A", "M", 360, 390)])];
    let p = Params::default();
    let at = |now_min: i64, driver: Option<&str>, signed: &[&str]| -> Vec<&'static str> {
        let rl = reliefs(&runs);
        let ra: HashMap<String, RunAssignment> = driver
            .map(|d| {
                let a = RunAssignment {
                    driver: Some(d.into()),
                    ..Default::default()
                };
                ("run-1".to_string(), a)
            })
            .into_iter()
            .collect();
        let signed_on: std::collections::HashSet<String> =
            signed.iter().map(|s| s.to_string()).collect();
        let assignments = HashMap::new();
        let (place, clock) = (|p: &str| p.to_string(), |ms: i64| format!("{}", ms / MIN));
        let day = RunDay {
            runs: &runs,
            reliefs: &rl,
            run_assignments: &ra,
            blocks: &[],
            assignments: &assignments,
            signed_on: &signed_on,
            is_today: true,
            now_ms: now_min * MIN,
        };
        let ctx = RunContext::new(day, &place, &clock, &p);
        run_conflicts(&runs[0], &ctx)
            .into_iter()
            .map(|c| c.code)
            .collect()
    };
    // Sign-on lead 30 min: from 330.
    assert!(at(300, None, &[]).is_empty());
    assert_eq!(at(340, None, &[]), ["run_unassigned"]);
    assert_eq!(at(340, Some("drv-1"), &[]), ["driver_not_signed_on"]);
    assert!(at(340, Some("drv-1"), &["drv-1"]).is_empty());
}

/// A run spanning two blocks: run 2 takes block B1 from run 1 at M at 390 and drives it
/// to B by 420, then takes block B2 from run 3 at M at 430. Two reliefs, both at the right
/// place and time, so no conflict. If run 3 only leaves B2 at 440, run 2 would take it at
/// 430 while run 3 still drives it: relief_overlap, on run 2's second piece only.
#[test]
fn a_run_spanning_two_blocks_is_relieved_on_each() {
    let p = Params::default();
    for (run3_leaves, want) in [(430, vec![]), (440, vec!["relief_overlap"])] {
        let runs = vec![
            run("run-1", vec![drive("B1", "A", "M", 360, 390)]),
            run(
                "run-2",
                vec![
                    drive("B1", "M", "B", 390, 420),
                    drive("B2", "M", "A", 430, 480),
                ],
            ),
            run("run-3", vec![drive("B2", "A", "M", 360, run3_leaves)]),
        ];
        let rl = reliefs(&runs);
        assert_eq!(rl.len(), 2, "one relief on each block: {rl:?}");
        assert_eq!(
            codes(&runs[1], &runs, &[], &p),
            want,
            "run 3 leaves B2 at {run3_leaves}"
        );
        assert!(codes(&runs[0], &runs, &[], &p).is_empty());
    }
}
