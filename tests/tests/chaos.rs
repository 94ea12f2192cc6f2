//! Randomized fleet chaos: `garasi-cloud` and two `garasi-edge` depots (A, B) as real
//! processes, each depot behind its own cuttable link, vehicles and device credentials
//! defined in the cloud. Seeded random rounds of telemetry bursts, status edits at depots
//! and at the cloud, contests (link cut, depot and cloud write the same field, link
//! restored; some with the cloud writing the depot's value that lost an earlier contest),
//! concurrent admin PUTs to one record, kill -9 + restart of any process and link cuts;
//! "settle" steps (also around double contests) wait for quiescence and check the values
//! the writes decide at once, before later writes can hide a wrong outcome.
//! At the end links restored, quiescence awaited, and checked: every `vehicle_status` record
//! identical at depot and cloud (every field); the cloud's value for every contested
//! field, the last value for fields only one side wrote; every sample each depot stored
//! is at the cloud exactly once; no depot sees the other's records or telemetry;
//! `PRAGMA integrity_check` of every store; no panic in any process log. Violations are
//! collected and reported together, with the seed.
//!
//! Long run: `GARASI_CHAOS_ROUNDS=200 cargo test -p garasi-fleet-tests --test chaos -- --nocapture`
//! (default 40 rounds). Replay: `GARASI_CHAOS_SEED=<seed>` (printed at the start and in
//! every failure) repeats the same actions and values; process timing still varies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use garasi_fleet_tests::have_openssl;
use procs::{last_error, publish_samples, recent_t0, samples_differ, Fleet};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

const STATUSES: [&str; 3] = ["in_service", "out_of_service", "in_maintenance"];
const NAMES: [&str; 2] = ["A", "B"];
const QUIESCENCE_LIMIT: Duration = Duration::from_secs(60);
/// A burst whose edge was killed may never see all its acknowledgements; stop waiting.
const BURST_LIMIT: Duration = Duration::from_secs(8);

/// One write of one field, in the order the test made them.
#[derive(Debug, Clone)]
struct Write {
    cloud: bool,
    /// Concurrent admin PUTs share a group; every other write has its own.
    group: u64,
    /// The depot's link-cut window it happened in (None: link up).
    window: Option<u64>,
    /// None: the request failed, so whether it took effect is unknown.
    value: Option<Value>,
    round: usize,
}

/// What the final value of a field must be (one of these), and why; None: not decided
/// by the writes alone (a depot write after a cloud write it may not have seen).
fn expected(ws: &[Write]) -> Option<(Vec<Value>, &'static str)> {
    let Some(ci) = ws.iter().rposition(|w| w.cloud) else {
        let v = ws.last()?.value.clone()?;
        return Some((vec![v], "only the depot wrote it: its last value"));
    };
    let c = &ws[ci];
    let values = ws.iter().filter(|w| w.cloud && w.group == c.group);
    let values: Option<Vec<Value>> = values.map(|w| w.value.clone()).collect();
    if ws.iter().all(|w| w.cloud) {
        return Some((values?, "only the cloud wrote it: its last write"));
    }
    // A contest: the cloud's last write and a depot write of the field in one cut
    // window, and nothing after it but depot writes in that window.
    let contest = c.window.is_some()
        && ws[ci + 1..].iter().all(|w| w.window == c.window)
        && ws.iter().any(|w| !w.cloud && w.window == c.window);
    let why = "the cloud wins the contest (same field, one cut window, nothing after)";
    contest.then_some((values?, why))
}

/// The last writes of a field: "r<round> <side>#<group>[ cut#<window>] <value>".
fn history(ws: &[Write]) -> String {
    let one = |w: &Write| {
        let who = if w.cloud { "cloud" } else { "depot" };
        let win = w.window.map(|n| format!(" cut#{n}")).unwrap_or_default();
        let v = w.value.as_ref().map_or("<failed>".into(), Value::to_string);
        format!("r{} {who}#{}{win} {v}", w.round, w.group)
    };
    let skip = ws.len().saturating_sub(12);
    let last: Vec<String> = ws.iter().skip(skip).map(one).collect();
    format!("{}{}", if skip > 0 { "..., " } else { "" }, last.join(", "))
}

/// Fields of depot `d` whose value at the cloud (`records`) is not what the writes decide.
fn wrong_values(m: &Model, d: usize, records: &BTreeMap<String, Value>) -> Vec<String> {
    let mut p = vec![];
    for ((_, v, field), ws) in m.writes.iter().filter(|(k, _)| k.0 == d) {
        let Some((want, why)) = expected(ws) else {
            continue;
        };
        let got = records.get(v).map_or(Value::Null, |r| r[*field].clone());
        if !want.contains(&got) {
            let (name, h, want) = (NAMES[d], history(ws), Value::from(want));
            p.push(format!("wrong value: {name} {v}.{field} is {got} at the cloud, want one of {want} ({why}); writes: {h}"));
        }
    }
    p
}

/// What the test wrote and did, for the checks and the summary.
#[derive(Default)]
struct Model {
    /// (depot index, vehicle, field) -> writes, oldest first.
    writes: BTreeMap<(usize, String, &'static str), Vec<Write>>,
    /// Per depot, the current link-cut window and the round it began.
    windows: [Option<(u64, usize)>; 2],
    next_id: u64,
    /// The depot's last status in a contest it lost, per (depot, vehicle).
    losers: BTreeMap<(usize, String), String>,
    next_ts: BTreeMap<String, i64>,
    bursts: BTreeMap<String, tokio::task::JoinHandle<Option<usize>>>,
    old_logs: String,
    problems: Vec<String>,
    /// The fleet did not settle once: do not wait for it again before the end.
    stuck: bool,
    counts: BTreeMap<&'static str, usize>,
}

struct Chaos {
    seed: u64,
    started: Instant,
    rng: StdRng,
    round: usize,
    f: Fleet,
    m: Model,
}

impl Chaos {
    fn say(&self, what: &str) {
        let (s, r, t) = (self.seed, self.round, self.started.elapsed());
        eprintln!("[chaos {s} {t:5.1?}] round {r}: {what}");
    }

    fn problem(&mut self, what: String) {
        let r = self.round;
        self.m.problems.push(format!("round {r}: {what}"));
    }

    fn count(&mut self, what: &'static str, n: usize) {
        *self.m.counts.entry(what).or_default() += n;
    }

    fn id(&mut self) -> u64 {
        self.m.next_id += 1;
        self.m.next_id
    }

    fn status(&mut self) -> String {
        STATUSES[self.rng.random_range(0..3)].to_string()
    }

    fn window(&self, d: usize) -> Option<u64> {
        self.m.windows[d].map(|w| w.0)
    }

    /// Records one write of `field` (a failed request: `value` None).
    fn wrote(
        &mut self,
        d: usize,
        v: &str,
        field: &'static str,
        by: (bool, u64),
        value: Option<Value>,
    ) {
        let (cloud, group, window, round) = (by.0, by.1, self.window(d), self.round);
        let w = Write {
            cloud,
            group,
            window,
            value,
            round,
        };
        let key = (d, v.to_string(), field);
        self.m.writes.entry(key).or_default().push(w);
    }

    async fn depot_write(&mut self, d: usize, v: &str, status: &str) {
        let note = self.rng.random_bool(0.7).then(|| format!("n{}", self.id()));
        // set_by is the signed-in dispatcher, never a body field (issue 11).
        let set_by = procs::dispatcher_of(d);
        let body = json!({"status": status, "note": note, "set_by": set_by});
        let path = format!("/api/v1/vehicles/{v}/status");
        let answer = self.f.edges[d].try_put(&path, &body).await;
        if let Err(e) = &answer {
            let why = last_error(&self.f.edges[d].log());
            self.problem(format!("depot {} write failed: {e}; {why}", NAMES[d]));
        }
        let group = self.id();
        for field in ["status", "note", "set_by"] {
            let value = answer.is_ok().then(|| body[field].clone());
            self.wrote(d, v, field, (false, group), value);
        }
        self.count("depot status writes", 1);
    }

    /// Admin PUTs of `bodies` to one record, all at the same moment when there are several.
    async fn cloud_write(&mut self, d: usize, v: &str, bodies: &[Value]) {
        let depot = &self.f.depots[d];
        let path = format!("/api/v1/admin/depots/{depot}/records/vehicle_status/{v}");
        let puts = bodies.iter().map(|b| self.f.cloud.try_admin_put(&path, b));
        let answers = futures::future::join_all(puts).await;
        let (group, n) = (self.id(), bodies.len());
        for (body, answer) in bodies.iter().zip(answers) {
            if let Err(e) = &answer {
                let why = last_error(&self.f.cloud.log());
                self.problem(format!("admin write (1 of {n} at once) failed: {e}; {why}"));
            }
            let fields = ["status", "workshop"].into_iter();
            for field in fields.filter(|f| body.get(f).is_some()) {
                let value = answer.is_ok().then(|| body[field].clone());
                self.wrote(d, v, field, (true, group), value);
            }
        }
        self.count("cloud status writes", n);
        if n > 1 {
            self.count("concurrent admin PUTs", n);
        }
    }

    /// 2-3 admin bodies with distinct statuses (`first` among them), for concurrent PUTs.
    fn concurrent_bodies(&mut self, first: &str) -> Vec<Value> {
        let mut statuses = vec![first];
        statuses.extend(STATUSES.iter().filter(|s| **s != first));
        let n = self.rng.random_range(2..=3);
        let body = |i: usize, id| json!({"status": statuses[i], "workshop": format!("bay {id}")});
        (0..n).map(|i| body(i, self.id())).collect()
    }

    fn cut(&mut self, d: usize) {
        if self.m.windows[d].is_none() {
            self.f.links[d].cut();
            self.m.windows[d] = Some((self.id(), self.round));
            self.count("link cuts", 1);
        }
    }

    async fn restore(&mut self, d: usize) {
        if self.m.windows[d].take().is_some() {
            self.f.links[d].restore().await;
        }
    }

    /// Link cut; the depot writes the status of `v` (1-3 times), the cloud writes it (one
    /// or two PUTs in turn, or concurrent PUTs), maybe the depot again; link restored.
    /// With `cloud_value`, that is the cloud's (only) last value and the depot avoids it.
    async fn contest(&mut self, d: usize, v: &str, cloud_value: Option<String>) {
        self.cut(d);
        let window = self.window(d);
        let mut depot_last = String::new();
        for _ in 0..self.rng.random_range(1..=3) {
            depot_last = self.status();
            while Some(&depot_last) == cloud_value.as_ref() {
                depot_last = self.status();
            }
            self.depot_write(d, v, &depot_last).await;
        }
        let concurrent = cloud_value.is_none() && self.rng.random_bool(0.3);
        let earlier_loser = self.m.losers.get(&(d, v.to_string())).cloned();
        let mut pick = match (cloud_value, earlier_loser) {
            (Some(c), _) => c,
            (None, Some(l)) if self.rng.random_bool(0.5) => l,
            _ => depot_last.clone(),
        };
        while pick == depot_last {
            pick = self.status();
        }
        if concurrent {
            let bodies = self.concurrent_bodies(&pick);
            self.cloud_write(d, v, &bodies).await;
        } else {
            if self.rng.random_bool(0.3) {
                let first = json!({"status": self.status()});
                self.cloud_write(d, v, &[first]).await;
            }
            self.cloud_write(d, v, &[json!({"status": pick})]).await;
        }
        if self.rng.random_bool(0.3) {
            let s = self.status();
            self.depot_write(d, v, &s).await;
        }
        self.restore(d).await;
        self.count("contests", 1);
        // Remember the depot's value if it lost, for a later contest to write at the cloud.
        let ws = &self.m.writes[&(d, v.to_string(), "status")];
        let lost = ws.iter().rev().find(|w| !w.cloud && w.window == window);
        let lost = lost.and_then(|w| w.value.clone());
        if let (Some((winners, _)), Some(lost)) = (expected(ws), lost) {
            if !winners.contains(&lost) {
                let lost = lost.as_str().unwrap().to_string();
                self.m.losers.insert((d, v.to_string()), lost);
            }
        }
        let how = ["admin PUT", "concurrent admin PUTs"][usize::from(concurrent)];
        let said = format!("depot {depot_last}, cloud {pick} ({how})");
        self.say(&format!("contest at {} {v}: {said}", NAMES[d]));
    }

    /// Telemetry from 1-2 vehicles of depot `d`, in the background (skipping a vehicle
    /// whose last burst still runs: its device can have one connection only).
    async fn burst(&mut self, d: usize) {
        for _ in 0..self.rng.random_range(1..=2) {
            let i = self.rng.random_range(0..self.f.vehicles[d].len());
            let (v, pw) = self.f.vehicles[d][i].clone();
            if self.m.bursts.get(&v).is_some_and(|h| !h.is_finished()) {
                continue;
            }
            if let Some(h) = self.m.bursts.remove(&v) {
                self.finish_burst(h).await;
            }
            let n = self.rng.random_range(20..=200);
            let ts = *self.m.next_ts.entry(v.clone()).or_insert_with(recent_t0);
            self.m.next_ts.insert(v.clone(), ts + n as i64 * 1000);
            let (port, id) = (self.f.edges[d].mqtt_port, v.clone());
            let burst = async move { publish_samples(port, &id, &pw, ts, n).await };
            let limited = async move { tokio::time::timeout(BURST_LIMIT, burst).await.ok() };
            self.m.bursts.insert(v, tokio::spawn(limited));
            self.count("bursts", 1);
        }
    }

    async fn finish_burst(&mut self, h: tokio::task::JoinHandle<Option<usize>>) {
        match h.await.unwrap() {
            Some(acked) => self.count("samples acknowledged", acked),
            None => self.count("bursts cut short", 1),
        }
    }

    /// Links restored, the fleet quiet (20 s at most), and the values the writes decide
    /// checked at once: later writes must not hide a wrong outcome.
    async fn settle(&mut self) {
        self.say("settle and check");
        for e in 0..2 {
            self.restore(e).await;
        }
        if self.m.stuck || self.f.quiescence(Duration::from_secs(20)).await.is_none() {
            if !std::mem::replace(&mut self.m.stuck, true) {
                self.problem("no quiescence within 20 s (not awaited again)".into());
            }
            return;
        }
        self.count("checkpoints", 1);
        for d in 0..2 {
            let records = self
                .f
                .cloud
                .records(&self.f.depots[d], "vehicle_status")
                .await;
            for p in wrong_values(&self.m, d, &records.unwrap_or_default()) {
                if !self.m.problems.iter().any(|q| q.ends_with(&p)) {
                    self.problem(p);
                }
            }
        }
    }

    async fn round(&mut self) {
        for (e, name) in NAMES.iter().enumerate() {
            if self.m.windows[e].is_some_and(|(_, since)| self.round >= since + 3) {
                self.say(&format!("link {name} restored (cut 3 rounds ago)"));
                self.restore(e).await;
            }
        }
        let d = self.rng.random_range(0..2);
        let name = NAMES[d];
        let i = self.rng.random_range(0..self.f.vehicles[d].len());
        let v = self.f.vehicles[d][i].0.clone();
        match self.rng.random_range(0..100) {
            0..15 => {
                let both = self.rng.random_bool(0.5);
                let at = if both { "A and B" } else { name };
                self.say(&format!("telemetry at {at}"));
                self.burst(d).await;
                if both {
                    self.burst(1 - d).await;
                }
            }
            15..30 => {
                let n = self.rng.random_range(1..=3);
                self.say(&format!("{n} status edit(s) at {name} {v}"));
                for _ in 0..n {
                    let s = self.status();
                    self.depot_write(d, &v, &s).await;
                }
            }
            30..40 => {
                let mut body = json!({"status": self.status()});
                if self.rng.random_bool(0.5) {
                    body["workshop"] = json!(format!("bay {}", self.id()));
                }
                self.say(&format!("admin edit of {name} {v}: {body}"));
                self.cloud_write(d, &v, &[body]).await;
            }
            40..55 => self.contest(d, &v, None).await,
            55..65 => {
                // Two contests on one record, the second cloud write being the value the
                // depot lost with in the first: the conflict that one left must not stop
                // the cloud from winning again.
                self.contest(d, &v, None).await;
                self.settle().await;
                let loser = self.m.losers.get(&(d, v.clone())).cloned();
                self.contest(d, &v, loser).await;
                self.settle().await;
            }
            65..75 => {
                self.say(&format!("concurrent admin PUTs to {name} {v}"));
                let s = self.status();
                let bodies = self.concurrent_bodies(&s);
                self.cloud_write(d, &v, &bodies).await;
            }
            75..88 => {
                let which = self.rng.random_range(0..3);
                let pause = Duration::from_millis(self.rng.random_range(0..300));
                let target = ["the cloud", "depot A", "depot B"][which];
                self.say(&format!("kill -9 {target}, restart after {pause:?}"));
                self.m.old_logs += &self.f.kill9_and_restart(which, pause).await;
                self.count("kills", 1);
            }
            88..93 => self.settle().await,
            _ if self.m.windows[d].is_some() => {
                self.say(&format!("link {name} restored"));
                self.restore(d).await;
            }
            _ => {
                self.say(&format!("link {name} cut"));
                self.cut(d);
            }
        }
    }
}

/// Checks the end state, stopping every process on the way; returns (samples stored at
/// the depots, violations).
async fn final_checks(c: &mut Chaos) -> (usize, Vec<String>) {
    let mut p = std::mem::take(&mut c.m.problems);
    let (isolation, at_cloud) = c.f.isolation().await;
    p.extend(isolation);
    let mut stored = 0;
    for (d, name) in NAMES.iter().enumerate() {
        if c.f.edges[d].stop() != Some(0) {
            p.push(format!("depot {name} did not stop cleanly on SIGTERM"));
        }
        let dump = match c.f.edges[d].dump() {
            Ok(x) => x,
            Err(e) => {
                p.push(format!("depot {name}: reading its store failed: {e}"));
                continue;
            }
        };
        stored += dump.samples.len();
        if dump.integrity != "ok" {
            p.push(format!("depot {name}: integrity_check: {}", dump.integrity));
        }
        let own = |id: &&String| c.f.vehicles[d].iter().any(|v| &v.0 == *id);
        for id in dump.vehicle_ids.iter().filter(|id| !own(id)) {
            p.push(format!("isolation: depot {name}'s store holds {id}"));
        }
        // 1. The same visible record on both sides, every field.
        let records = &at_cloud[d].records;
        let ids: BTreeSet<_> = dump.statuses.keys().chain(records.keys()).collect();
        for v in ids {
            let (e, cl) = (dump.statuses.get(v), records.get(v));
            let ws = c.m.writes.get(&(d, v.clone(), "status"));
            if e != cl {
                let h = ws.map_or(String::new(), |w| history(w));
                let at = format!("depot {e:?}, cloud {cl:?}");
                p.push(format!("diverged: {name} {v}: {at}; status writes: {h}"));
            }
        }
        // 2. The values the writes decide (contests: the cloud's; one writer: its last).
        for q in wrong_values(&c.m, d, records) {
            if !p.iter().any(|x| x.ends_with(&q)) {
                p.push(q);
            }
        }
        // 3. Every sample the depot stored is at the cloud exactly once.
        if let Some(diff) = samples_differ(&dump.samples, &at_cloud[d].samples) {
            p.push(format!("telemetry of depot {name}: {diff}"));
        }
    }
    if c.f.cloud.stop() != Some(0) {
        p.push("the cloud did not stop cleanly on SIGTERM".into());
    }
    let integrity = c.f.cloud.integrity_check();
    if integrity != "ok" {
        p.push(format!("cloud: integrity_check: {integrity}"));
    }
    for line in c.f.panics(&c.m.old_logs) {
        p.push(format!("panic in a process log: {line}"));
    }
    (stored, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_writes_kills_and_cuts_converge() {
    if !have_openssl() {
        return;
    }
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let rounds = env("GARASI_CHAOS_ROUNDS").unwrap_or(40) as usize;
    let seed = env("GARASI_CHAOS_SEED").unwrap_or_else(|| rand::rng().random());
    let replay = format!("GARASI_CHAOS_SEED={seed} GARASI_CHAOS_ROUNDS={rounds}");
    eprintln!("chaos: seed {seed}, {rounds} rounds (replay: {replay})");
    let (default_hook, hook_replay) = (std::panic::take_hook(), replay.clone());
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("chaos seed {seed} failed; replay: {hook_replay}");
        default_hook(info);
    }));
    let test_start = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b): (&[&str], &[&str]) = (&["bus-a1", "bus-a2", "bus-a3"], &["bus-b1", "bus-b2"]);
    let f = Fleet::start(tmp.path(), &[("A", a), ("B", b)]).await;
    let (rng, m) = (StdRng::seed_from_u64(seed), Model::default());
    let (round, started) = (0, Instant::now());
    let mut c = Chaos {
        seed,
        started,
        rng,
        round,
        f,
        m,
    };
    for r in 1..=rounds {
        c.round = r;
        c.round().await;
    }
    // Settle: bursts done, links back, every process running.
    for (_, h) in std::mem::take(&mut c.m.bursts) {
        c.finish_burst(h).await;
    }
    for d in 0..2 {
        c.restore(d).await;
    }
    let exited = c.f.exited();
    c.m.problems.extend(exited);
    let quiet = c.f.quiescence(QUIESCENCE_LIMIT).await;
    if quiet.is_none() {
        let limit = QUIESCENCE_LIMIT;
        c.m.problems.push(format!("no quiescence within {limit:?}"));
    }
    let (stored, problems) = final_checks(&mut c).await;
    let quiet = quiet.map_or("never".into(), |d| format!("{d:.1?}"));
    let (counts, total) = (&c.m.counts, test_start.elapsed());
    eprintln!("chaos summary: seed {seed}, {rounds} rounds, {counts:?}, samples stored at the depots {stored}, quiescence after {quiet}, total {total:.1?}");
    let (n, all) = (problems.len(), problems.join("\n- "));
    assert!(
        n == 0,
        "chaos seed {seed} ({replay}): {n} problems:\n- {all}"
    );
}
