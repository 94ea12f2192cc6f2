//! The limits the command line sets (each also from a `GARASI_CLOUD_*` variable): what
//! a connection, a request and a timetable may take. Defaults are the library's.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::ApiLimits;
use crate::gtfs::Limits as GtfsLimits;
use crate::net::ConnLimits;

/// Limits on what one GTFS feed may make the importer read and hold.
#[derive(clap::Args, Debug, Clone)]
pub(super) struct GtfsLimitArgs {
    /// All files of a feed together, uncompressed.
    #[arg(long, env = "GARASI_CLOUD_GTFS_MAX_UNPACKED_BYTES", default_value_t = GtfsLimits::default().max_unpacked_bytes)]
    gtfs_max_unpacked_bytes: u64,
    /// Entries in a feed's zip.
    #[arg(long, env = "GARASI_CLOUD_GTFS_MAX_FILES", default_value_t = GtfsLimits::default().max_files)]
    gtfs_max_files: u64,
    /// Data rows in any one file of a feed.
    #[arg(long, env = "GARASI_CLOUD_GTFS_MAX_ROWS_PER_FILE", default_value_t = GtfsLimits::default().max_rows_per_file)]
    gtfs_max_rows_per_file: u64,
    /// Fields in any one row.
    #[arg(long, env = "GARASI_CLOUD_GTFS_MAX_FIELDS_PER_ROW", default_value_t = GtfsLimits::default().max_fields_per_row)]
    gtfs_max_fields_per_row: u64,
    /// Bytes of any one row.
    #[arg(long, env = "GARASI_CLOUD_GTFS_MAX_ROW_BYTES", default_value_t = GtfsLimits::default().max_row_bytes)]
    gtfs_max_row_bytes: u64,
    /// Estimated memory one import may keep (the parsed feed, frequencies expanded).
    #[arg(long, env = "GARASI_CLOUD_GTFS_MAX_MEMORY_BYTES", default_value_t = GtfsLimits::default().max_memory_bytes)]
    gtfs_max_memory_bytes: u64,
}

impl GtfsLimitArgs {
    pub fn limits(&self) -> GtfsLimits {
        GtfsLimits {
            max_unpacked_bytes: self.gtfs_max_unpacked_bytes,
            max_files: self.gtfs_max_files,
            max_rows_per_file: self.gtfs_max_rows_per_file,
            max_fields_per_row: self.gtfs_max_fields_per_row,
            max_row_bytes: self.gtfs_max_row_bytes,
            max_memory_bytes: self.gtfs_max_memory_bytes,
        }
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Connection and request limits of `serve`.
#[derive(clap::Args, Debug, Clone)]
pub(super) struct ServeLimitArgs {
    /// Open connections at most (lowered to `ulimit -n` less --fd-reserve).
    #[arg(long, env = "GARASI_CLOUD_MAX_CONNECTIONS", default_value_t = ConnLimits::default().max_connections)]
    max_connections: usize,
    /// Open connections per client address (0: no cap, e.g. behind a proxy).
    #[arg(long, env = "GARASI_CLOUD_MAX_CONNECTIONS_PER_CLIENT", default_value_t = ConnLimits::default().max_per_client)]
    max_connections_per_client: usize,
    /// File descriptors kept free of connections (database, uploads, logs).
    #[arg(long, env = "GARASI_CLOUD_FD_RESERVE", default_value_t = ConnLimits::default().fd_reserve)]
    fd_reserve: usize,
    /// Seconds a TLS handshake may take.
    #[arg(long, env = "GARASI_CLOUD_TLS_HANDSHAKE_TIMEOUT_S", default_value_t = secs(ConnLimits::default().tls_handshake_timeout))]
    tls_handshake_timeout_s: u64,
    /// Seconds until a request's headers are complete (and between HTTP/1.1 requests).
    #[arg(long, env = "GARASI_CLOUD_HEADER_READ_TIMEOUT_S", default_value_t = secs(ConnLimits::default().header_read_timeout))]
    header_read_timeout_s: u64,
    /// Seconds a connection may sit idle (no request in flight, no byte moving).
    #[arg(long, env = "GARASI_CLOUD_IDLE_TIMEOUT_S", default_value_t = secs(ConnLimits::default().idle_timeout))]
    idle_timeout_s: u64,
    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, env = "GARASI_CLOUD_H2_MAX_STREAMS", default_value_t = ConnLimits::default().h2_max_streams)]
    h2_max_streams: u32,
    /// Largest body of a JSON route, in bytes.
    #[arg(long, env = "GARASI_CLOUD_MAX_JSON_BODY_BYTES", default_value_t = ApiLimits::default().json_body_bytes)]
    max_json_body_bytes: usize,
    /// Largest timetable upload, in bytes (streamed to --upload-dir).
    #[arg(long, env = "GARASI_CLOUD_MAX_UPLOAD_BYTES", default_value_t = ApiLimits::default().upload_bytes)]
    max_upload_bytes: u64,
    /// Seconds a JSON or push body may take to arrive.
    #[arg(long, env = "GARASI_CLOUD_BODY_TIMEOUT_S", default_value_t = secs(ApiLimits::default().body_timeout))]
    body_timeout_s: u64,
    /// Seconds a timetable upload may take to arrive.
    #[arg(long, env = "GARASI_CLOUD_UPLOAD_TIMEOUT_S", default_value_t = secs(ApiLimits::default().upload_timeout))]
    upload_timeout_s: u64,
    /// JSON request bodies buffered at once, in bytes.
    #[arg(long, env = "GARASI_CLOUD_JSON_BODY_BUDGET_BYTES", default_value_t = ApiLimits::default().json_budget_bytes)]
    json_body_budget_bytes: usize,
    /// Push bodies buffered at once, in bytes.
    #[arg(long, env = "GARASI_CLOUD_PUSH_BODY_BUDGET_BYTES", default_value_t = ApiLimits::default().push_budget_bytes)]
    push_body_budget_bytes: usize,
    /// Hours a new enrolment token works (a request may ask for 1 s to 30 days).
    #[arg(long, env = "GARASI_CLOUD_ENROLMENT_TTL_HOURS", default_value_t = secs(ApiLimits::default().enrolment_ttl) / 3600)]
    enrolment_ttl_hours: u64,
    /// Pushes stored at once, 1 to 1024 [default: twice the cores, 4 to 64]; with the
    /// database on a bigger machine, up to the write pool's size
    /// (GARASI_CLOUD_PG_WRITE_CONNECTIONS).
    #[arg(long, env = "GARASI_CLOUD_CONCURRENT_PUSHES")]
    concurrent_pushes: Option<usize>,
    /// Where timetable uploads are kept while imported [default: the system's temp dir].
    #[arg(long, env = "GARASI_CLOUD_UPLOAD_DIR")]
    upload_dir: Option<PathBuf>,
}

impl ServeLimitArgs {
    pub fn conn(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections,
            max_per_client: self.max_connections_per_client,
            fd_reserve: self.fd_reserve,
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_s),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_s),
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            h2_max_streams: self.h2_max_streams,
            // The cloud's routes time and budget their bodies themselves once the
            // client authenticated; these hold before that.
            ..ConnLimits::default()
        }
    }

    pub fn api(&self) -> ApiLimits {
        ApiLimits {
            json_body_bytes: self.max_json_body_bytes,
            upload_bytes: self.max_upload_bytes,
            body_timeout: Duration::from_secs(self.body_timeout_s),
            upload_timeout: Duration::from_secs(self.upload_timeout_s),
            json_budget_bytes: self.json_body_budget_bytes,
            push_budget_bytes: self.push_body_budget_bytes,
            enrolment_ttl: Duration::from_secs(self.enrolment_ttl_hours * 3600),
            concurrent_pushes: self
                .concurrent_pushes
                .unwrap_or(ApiLimits::default().concurrent_pushes),
            upload_dir: self.upload_dir.clone(),
        }
    }

    /// Settings that cannot work, each with what to do.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut positive = |v: u64, flag: &str| {
            if v == 0 {
                out.push(format!("{flag} must be at least 1"));
            }
        };
        positive(self.max_connections as u64, "--max-connections");
        positive(self.tls_handshake_timeout_s, "--tls-handshake-timeout-s");
        positive(self.header_read_timeout_s, "--header-read-timeout-s");
        positive(self.idle_timeout_s, "--idle-timeout-s");
        positive(u64::from(self.h2_max_streams), "--h2-max-streams");
        positive(self.body_timeout_s, "--body-timeout-s");
        positive(self.upload_timeout_s, "--upload-timeout-s");
        positive(self.enrolment_ttl_hours, "--enrolment-ttl-hours");
        if let Some(n) = self.concurrent_pushes {
            if !(1..=1024).contains(&n) {
                out.push("--concurrent-pushes must be from 1 to 1024 (at most the PostgreSQL write pool, GARASI_CLOUD_PG_WRITE_CONNECTIONS, is useful)".into());
            }
        }
        if self.enrolment_ttl_hours > 30 * 24 {
            out.push("--enrolment-ttl-hours must be at most 720 (30 days)".into());
        }
        if self.max_json_body_bytes < 1024 {
            out.push("--max-json-body-bytes must be at least 1024".into());
        }
        if self.json_body_budget_bytes < self.max_json_body_bytes {
            out.push("--json-body-budget-bytes must be at least --max-json-body-bytes".into());
        }
        if self.push_body_budget_bytes < crate::api::PUSH_BODY_BYTES {
            out.push(format!(
                "--push-body-budget-bytes must be at least one push ({} bytes)",
                crate::api::PUSH_BODY_BYTES
            ));
        }
        if let Some(d) = &self.upload_dir {
            if !d.is_dir() {
                out.push(format!("--upload-dir {}: not a directory", d.display()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: super::ServeLimitArgs,
    }

    /// A bound of 0 would stop every push; a huge one would be no bound (and past
    /// tokio's limit panic at start): both are refused with what to set.
    #[test]
    fn concurrent_pushes_must_be_from_1_to_1024() {
        for (arg, ok) in [
            ("0", false),
            ("1", true),
            ("1024", true),
            ("1025", false),
            ("18446744073709551615", false),
        ] {
            let cli = Cli::try_parse_from(["garasi-cloud", "--concurrent-pushes", arg]).unwrap();
            let problems = cli.limits.problems();
            let refused = problems.iter().any(|p| p.contains("--concurrent-pushes"));
            assert_eq!(refused, !ok, "{arg}: {problems:?}");
        }
    }
}
