//! The demo's day, placed around the moment it starts (in the depot's zone), so it is
//! live at any hour: a few blocks pulled out in the last hours (their buses on the
//! road), the rest pulling out over the next hours with their buses plugged in to
//! charge, and the first of those at risk (a long block, a nearly empty bus, too
//! little time), so a newcomer sees every state on the board and the charging page.

use crate::modules::dispatch;
use crate::modules::dispatch::plan::Trip;

/// Who assigns in the demo: an automatic source, named as such in every assignment.
pub(super) const DEMO_SOURCE: &str = "demo";
/// The demo's block ids start so: a new run retires the blocks of earlier ones.
const DEMO_BLOCK_PREFIX: &str = "demo-";

/// A bus plugged in for its next block.
#[derive(Debug, Clone)]
pub(super) struct Plugged {
    pub vehicle: String,
    pub soc_pct: f64,
    /// Its block's pull-out: the bus drives off then.
    pub leave_ms: i64,
}

/// What the demo's day put where.
#[derive(Debug, Default)]
pub(super) struct DemoDay {
    pub plugged: Vec<Plugged>,
    /// Buses out on blocks that pulled out before the demo started.
    pub on_road: Vec<String>,
}

const MIN: i64 = 60_000;

/// One block starting at `pull_out` (4 trips of `km` each).
fn block(
    d: &dispatch::service::Dispatch,
    b: usize,
    pull_out: i64,
    km: f64,
) -> dispatch::service::LocalBlock {
    let date = d.date_at(pull_out);
    let midnight = date
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|dt| dt.to_zoned(d.timezone()).ok())
        .map_or(pull_out, |z| z.timestamp().as_millisecond());
    let clock = |ms: i64| {
        let m = (ms - midnight) / MIN;
        format!("{:02}:{:02}:00", m / 60, m % 60)
    };
    let (a, z) = ("Depot Gate", "Terminal Kota");
    let trips: Vec<Trip> = (0..4)
        .map(|k| {
            let s = pull_out + 10 * MIN + k * 70 * MIN;
            Trip {
                trip: format!("T{}-{}", b + 1, k + 1),
                route: format!("D{}", b % 3 + 1),
                headsign: None,
                start: clock(s),
                end: clock(s + 60 * MIN),
                start_ms: s,
                end_ms: s + 60 * MIN,
                from: if k % 2 == 0 { a } else { z }.into(),
                to: if k % 2 == 0 { z } else { a }.into(),
                km,
            }
        })
        .collect();
    let end = trips.last().map_or(pull_out, |t| t.end_ms) + 10 * MIN;
    dispatch::service::LocalBlock {
        id: format!("{DEMO_BLOCK_PREFIX}{}-B{:02}", date.replace('-', ""), b + 1),
        service_date: date,
        block: format!("B{:02}", b + 1),
        routes: format!("D{}", b % 3 + 1),
        pull_out_ms: pull_out,
        pull_in_ms: end,
        distance_km: km * 4.0,
        vehicle_type: None,
        trips,
    }
}

/// Places `blocks` blocks around `now` on buses `bus-001`.., assigns them (as the demo)
/// and records the pull-outs already past.
pub(super) async fn demo_day(
    store: &crate::store::Store,
    d: &dispatch::service::Dispatch,
    blocks: usize,
    now: i64,
) -> anyhow::Result<DemoDay> {
    let past = (blocks / 5).max(1).min(blocks);
    let mut day = DemoDay::default();
    let mut list = Vec::with_capacity(blocks);
    for b in 0..blocks {
        let vehicle = format!("bus-{:03}", b + 1);
        let (pull_out, km) = if b < past {
            (
                now - (150 - 40 * b as i64).max(20) * MIN,
                25.0 + (b % 4) as f64 * 8.0,
            )
        } else {
            let j = (b - past) as i64;
            // The first bus to leave is nearly empty for a long block: at risk.
            let km = if j == 0 {
                48.0
            } else {
                25.0 + (b % 4) as f64 * 8.0
            };
            (now + 45 * MIN + j * 40 * MIN, km)
        };
        let blk = block(d, b, pull_out, km);
        if b < past {
            day.on_road.push(vehicle.clone());
        } else {
            let j = b - past;
            let soc_pct = if j == 0 {
                12.0
            } else {
                20.0 + ((j * 7) % 35) as f64
            };
            day.plugged.push(Plugged {
                vehicle: vehicle.clone(),
                soc_pct,
                leave_ms: pull_out,
            });
        }
        list.push((blk, vehicle));
    }
    let blocks_only: Vec<_> = list.iter().map(|(b, _)| b.clone()).collect();
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // An earlier run's blocks (placed around another moment) leave the board.
        let keep: Vec<String> = blocks_only.iter().map(|b| b.id.clone()).collect();
        dispatch::service::retire_local_blocks(&store2, DEMO_BLOCK_PREFIX, &keep)?;
        dispatch::service::import_local_blocks(&store2, &blocks_only)?;
        Ok(())
    })
    .await??;
    let mut by_date: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for (b, v) in &list {
        by_date
            .entry(b.service_date.clone())
            .or_default()
            .push((b.id.clone(), v.clone()));
    }
    for (date, pairs) in by_date {
        d.assign_local(&date, pairs, DEMO_SOURCE).await?;
    }
    for (b, v) in list.iter().take(past) {
        d.record_pull_out(v, b.pull_out_ms + 3 * MIN).await;
    }
    Ok(day)
}
