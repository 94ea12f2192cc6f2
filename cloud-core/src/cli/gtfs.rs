//! `garasi-cloud gtfs check` (validate a feed, list a day's trips and blocks) and
//! `gtfs import` (store a feed for depot plans, progress on stderr).

use anyhow::{bail, Context};

use crate::gtfs::{self, blocks};
use crate::store::CloudStore;

/// Opens a feed for reading (streamed: files are unpacked one at a time as parsed).
fn open_zip(file: &std::path::Path) -> anyhow::Result<Box<dyn gtfs::ReadSeek>> {
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(Box::new(std::io::BufReader::new(f)))
}

/// Imports a GTFS zip with a progress line on stderr, within `limits`; refuses an
/// unusable feed with the report.
pub(super) async fn import<S: CloudStore>(
    store: &S,
    file: &std::path::Path,
    name: &str,
    limits: gtfs::Limits,
) -> anyhow::Result<i64> {
    let progress = std::sync::Arc::new(gtfs::Progress::default());
    let p = progress.clone();
    let path = file.to_path_buf();
    let job = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        Ok(gtfs::import_reader(open_zip(&path)?, &limits, Some(&p)))
    });
    tokio::pin!(job);
    let result = loop {
        tokio::select! {
            r = &mut job => break r??,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                let (phase, done, total) = progress.snapshot();
                eprintln!("importing: {phase} ({}%)", (done * 100).checked_div(total).unwrap_or(0));
            }
        }
    };
    match result {
        Err(gtfs::GtfsError::Unusable { reason, report }) => {
            for i in &report.issues {
                outln!("{i}");
            }
            bail!("{}: {reason}", file.display())
        }
        Err(e) => bail!("{}: {e}", file.display()),
        Ok((_, report)) => {
            for i in &report.issues {
                outln!("{i}");
            }
            let json = serde_json::to_string(&report)?;
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            Ok(store.save_timetable(name, &bytes, &json).await?)
        }
    }
}

pub(super) fn check(
    file: &std::path::Path,
    date: Option<jiff::civil::Date>,
    min_layover_s: u32,
    limits: gtfs::Limits,
) -> anyhow::Result<()> {
    let zip = open_zip(file)?;
    let print = |r: &gtfs::Report| {
        for i in &r.issues {
            outln!("{i}");
        }
        if r.summary.values().sum::<u64>() as usize > r.issues.len() {
            outln!("totals by kind:");
            for (k, n) in &r.summary {
                outln!("  {n:>7}  {k}");
            }
        }
    };
    match gtfs::import_reader(zip, &limits, None) {
        Err(gtfs::GtfsError::Unusable { reason, report }) => {
            print(&report);
            bail!("{}: {reason}", file.display())
        }
        Err(e) => bail!("{}: {e}", file.display()),
        Ok((feed, report)) => {
            print(&report);
            let counts: Vec<String> = report
                .imported
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            outln!("importable: {}", counts.join(" "));
            if let Some(d) = date {
                let trips = feed.trips_on(d);
                let bl = blocks::blocks_for(&feed, d, blocks::BlockOptions { min_layover_s });
                outln!(
                    "{d}: {} trips, {} blocks ({} built)",
                    trips.len(),
                    bl.len(),
                    bl.iter().filter(|b| b.built).count()
                );
                for b in bl {
                    outln!(
                        "  {:<24} {}-{} {} trips",
                        b.id,
                        gtfs::format_time(b.start_s),
                        gtfs::format_time(b.end_s),
                        b.trip_ids.len()
                    );
                }
            }
            Ok(())
        }
    }
}
