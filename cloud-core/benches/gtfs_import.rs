//! Benchmark: a big-city feed (2,000,000 stop_times rows by default; pass another count
//! after `--`) imported by the real `garasi-cloud gtfs import` binary into a SQLite
//! cloud store, in its own process, with its peak RSS (the kernel's high-water mark,
//! from getrusage) and wall time, against a reference measured in the same run: reading
//! every row of the same zip with the csv crate and keeping nothing (the floor any
//! importer pays to decompress and split the text). Then `gtfs check` (the same parser,
//! printing what a day publishes) runs on the same zip, and its output is checked (trips
//! and blocks on a day, counted by construction) so a fast wrong import cannot pass.
//! Target, asserted: the import's peak RSS < 512 MB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Stops per trip and trips per block, so that rows / STOPS trips in rows / (STOPS *
/// PER_BLOCK) blocks run on a weekday.
const STOPS: u64 = 40;
const PER_BLOCK: u64 = 5;

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let zip_path = dir.path().join("city.zip");
    let (unpacked, trips) = generate(&zip_path, rows);
    let zip_bytes = std::fs::metadata(&zip_path).expect("zip").len();
    let blocks = trips / PER_BLOCK;

    let t = Instant::now();
    let ref_rows = read_all_rows(&zip_path);
    let reference_s = t.elapsed().as_secs_f64();

    // The import first: getrusage gives the largest peak of the children waited for, so
    // measured alone here it is the import's own.
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_garasi-cloud"))
        .args(["gtfs", "import", "--file"])
        .arg(&zip_path)
        .arg("--database")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("cloud.db").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn garasi-cloud");
    let (status, peak_kib) = wait_with_peak(&mut child);
    let import_s = t.elapsed().as_secs_f64();
    assert_eq!(status, 0, "gtfs import failed");

    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_garasi-cloud"))
        .args(["gtfs", "check", "--date", "2026-06-01", "--file"])
        .arg(&zip_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn garasi-cloud");
    let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut summary = String::new();
    for line in out.lines() {
        let line = line.expect("stdout line");
        if line.starts_with("importable:") || line.starts_with("2026-06-01:") {
            summary.push_str(&line);
            summary.push('\n');
        }
    }
    let (status, both_kib) = wait_with_peak(&mut child);
    let check_s = t.elapsed().as_secs_f64();
    assert_eq!(status, 0, "gtfs check failed:\n{summary}");
    assert!(
        summary.contains(&format!("trips={trips}")),
        "every trip imported:\n{summary}"
    );
    assert!(
        summary.contains(&format!(
            "2026-06-01: {trips} trips, {blocks} blocks (0 built)"
        )),
        "every block published:\n{summary}"
    );
    let peak_mib = peak_kib as f64 / 1024.0;
    println!(
        "stop_times rows {rows}, trips {trips}, blocks {blocks}, all CSV rows {ref_rows}; zip {:.1} MiB, unpacked {:.1} MiB",
        zip_bytes as f64 / 1048576.0,
        unpacked as f64 / 1048576.0
    );
    println!("reference (csv crate reads every row, keeps nothing): {reference_s:.2} s");
    println!(
        "garasi-cloud gtfs import (into SQLite): {import_s:.2} s ({:.2}x the reference), peak RSS {peak_mib:.1} MiB ({:.2}x the unpacked size; target < 512 MB)",
        import_s / reference_s,
        peak_kib as f64 * 1024.0 / unpacked as f64,
    );
    println!(
        "garasi-cloud gtfs check (same zip, output checked): {check_s:.2} s; the larger peak of import and check: {:.1} MiB",
        both_kib as f64 / 1024.0
    );
    println!(
        "{{\"stop_times_rows\":{rows},\"unpacked_bytes\":{unpacked},\"zip_bytes\":{zip_bytes},\"reference_s\":{reference_s:.3},\"import_s\":{import_s:.3},\"check_s\":{check_s:.3},\"peak_rss_mib\":{peak_mib:.1}}}"
    );
    assert!(
        peak_kib * 1024 < 512_000_000,
        "the import's peak RSS {peak_mib:.1} MiB is over the 512 MB target"
    );
}

/// Waits for the child; its exit code and peak RSS in KiB: the largest of the children
/// waited for (this benchmark has only this one).
fn wait_with_peak(child: &mut std::process::Child) -> (i32, u64) {
    let status = child.wait().expect("wait");
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    (status.code().unwrap_or(-1), usage.max_rss() as u64)
}

/// Every row of every file in the zip, read with the csv crate and dropped.
fn read_all_rows(path: &std::path::Path) -> u64 {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut n = 0;
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(f);
        let mut rec = csv::StringRecord::new();
        while r.read_record(&mut rec).unwrap() {
            n += 1;
        }
    }
    n
}

/// Writes the feed; returns its unpacked bytes and number of trips.
fn generate(path: &std::path::Path, rows: u64) -> (u64, u64) {
    let trips = rows / STOPS;
    let stops = 5_000u64;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let mut total = 0u64;
    let mut file = |name: &str, fill: &mut dyn FnMut(&mut dyn Write)| {
        zip.start_file(name, opts).unwrap();
        let mut counted = Counted(&mut zip, 0);
        {
            let mut w = std::io::BufWriter::new(&mut counted);
            fill(&mut w);
            w.flush().unwrap();
        }
        total += counted.1;
    };
    file("agency.txt", &mut |w| {
        writeln!(
            w,
            "agency_name,agency_url,agency_timezone\nCity Bus,https://x,Asia/Jakarta"
        )
        .unwrap();
    });
    file("stops.txt", &mut |w| {
        writeln!(w, "stop_id,stop_name,stop_lat,stop_lon").unwrap();
        for s in 0..stops {
            let (la, lo) = (
                -6.1 - (s % 100) as f64 * 0.002,
                106.7 + (s / 100) as f64 * 0.004,
            );
            writeln!(w, "S{s:05},Halte {s},{la:.5},{lo:.5}").unwrap();
        }
    });
    file("routes.txt", &mut |w| {
        writeln!(w, "route_id,route_short_name,route_type").unwrap();
        for r in 0..200 {
            writeln!(w, "R{r},{r},3").unwrap();
        }
    });
    file("calendar.txt", &mut |w| {
        writeln!(w, "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nWK,1,1,1,1,1,0,0,20260101,20261231").unwrap();
    });
    // Block k runs trips 5k..5k+4 back to back from 05:00, 50 minutes each, alternating
    // direction so each trip starts where the last ended.
    file("trips.txt", &mut |w| {
        writeln!(
            w,
            "route_id,service_id,trip_id,block_id,shape_id,direction_id"
        )
        .unwrap();
        for t in 0..trips {
            let b = t / PER_BLOCK;
            writeln!(w, "R{},WK,T{t:07},B{b:06},SH{},{}", b % 200, b % 200, t % 2).unwrap();
        }
    });
    file("stop_times.txt", &mut |w| {
        writeln!(
            w,
            "trip_id,arrival_time,departure_time,stop_id,stop_sequence"
        )
        .unwrap();
        for t in 0..trips {
            let start = 5 * 3600 + (t % PER_BLOCK) as u32 * 3000;
            let base = (t / PER_BLOCK) % (stops - STOPS);
            for k in 0..STOPS {
                let at = start + k as u32 * 3000 / STOPS as u32;
                let stop = if t % 2 == 0 {
                    base + k
                } else {
                    base + STOPS - 1 - k
                };
                let hms = format!("{:02}:{:02}:{:02}", at / 3600, at / 60 % 60, at % 60);
                writeln!(w, "T{t:07},{hms},{hms},S{stop:05},{}", k + 1).unwrap();
            }
        }
    });
    file("shapes.txt", &mut |w| {
        writeln!(w, "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence").unwrap();
        for s in 0..200 {
            for p in 0..500 {
                writeln!(
                    w,
                    "SH{s},{:.5},{:.5},{p}",
                    -6.1 - p as f64 * 0.0001,
                    106.7 + s as f64 * 0.001
                )
                .unwrap();
            }
        }
    });
    zip.finish().unwrap();
    (total, trips)
}

/// Counts what passes through to the zip writer (the unpacked size).
struct Counted<'a, W: Write>(&'a mut W, u64);

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(b)?;
        self.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
