//! What one feed may make the importer read and hold: unpacked bytes, files in the zip,
//! rows per file, fields and bytes per row, and the memory of what it keeps (estimated
//! as it goes: each stop, route, service, date, trip, stop time and shape point kept is
//! counted with its strings). A feed past any of them is refused as a whole, with the
//! limit named (for the report, the metric and the setting to raise). The defaults take
//! every real feed we have seen with room to spare.

/// Bounds on one import (the cloud's `--gtfs-max-*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All files together, uncompressed (a zip bomb guard).
    pub max_unpacked_bytes: u64,
    /// Entries in the zip (counted from its directory before it is read).
    pub max_files: u64,
    /// Data rows in any one file.
    pub max_rows_per_file: u64,
    /// Fields in any one row (the header too).
    pub max_fields_per_row: u64,
    /// Bytes of any one row (the header too).
    pub max_row_bytes: u64,
    /// Estimated bytes of what the import keeps (the parsed feed, frequencies.txt
    /// expanded), the bound on what one feed can make the cloud allocate.
    pub max_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked_bytes: super::MAX_FEED_BYTES,
            max_files: 1_000,
            max_rows_per_file: 5_000_000,
            max_fields_per_row: 200,
            max_row_bytes: 64 * 1024,
            max_memory_bytes: 1 << 30,
        }
    }
}

/// Which limit a feed went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    UnpackedBytes,
    Files,
    RowsPerFile,
    FieldsPerRow,
    RowBytes,
    Memory,
}

impl LimitKind {
    /// The name in import outcomes (`limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::UnpackedBytes => "unpacked_bytes",
            LimitKind::Files => "files",
            LimitKind::RowsPerFile => "rows_per_file",
            LimitKind::FieldsPerRow => "fields_per_row",
            LimitKind::RowBytes => "row_bytes",
            LimitKind::Memory => "memory_bytes",
        }
    }

    /// The label of `garasi_cloud_refusals_total` for a feed refused by this limit.
    pub fn metric_reason(self) -> &'static str {
        match self {
            LimitKind::UnpackedBytes => "gtfs_unpacked_bytes",
            LimitKind::Files => "gtfs_files",
            LimitKind::RowsPerFile => "gtfs_rows_per_file",
            LimitKind::FieldsPerRow => "gtfs_fields_per_row",
            LimitKind::RowBytes => "gtfs_row_bytes",
            LimitKind::Memory => "gtfs_memory_bytes",
        }
    }

    /// The setting that raises it.
    fn setting(self) -> &'static str {
        match self {
            LimitKind::UnpackedBytes => "--gtfs-max-unpacked-bytes",
            LimitKind::Files => "--gtfs-max-files",
            LimitKind::RowsPerFile => "--gtfs-max-rows-per-file",
            LimitKind::FieldsPerRow => "--gtfs-max-fields-per-row",
            LimitKind::RowBytes => "--gtfs-max-row-bytes",
            LimitKind::Memory => "--gtfs-max-memory-bytes",
        }
    }

    fn what(self) -> &'static str {
        match self {
            LimitKind::UnpackedBytes => "unpacks to more bytes",
            LimitKind::Files => "has more files",
            LimitKind::RowsPerFile => "has more rows",
            LimitKind::FieldsPerRow => "has a row with more fields",
            LimitKind::RowBytes => "has a row with more bytes",
            LimitKind::Memory => "needs more memory (estimated bytes)",
        }
    }

    pub(crate) fn of(self, limits: &Limits) -> u64 {
        match self {
            LimitKind::UnpackedBytes => limits.max_unpacked_bytes,
            LimitKind::Files => limits.max_files,
            LimitKind::RowsPerFile => limits.max_rows_per_file,
            LimitKind::FieldsPerRow => limits.max_fields_per_row,
            LimitKind::RowBytes => limits.max_row_bytes,
            LimitKind::Memory => limits.max_memory_bytes,
        }
    }
}

/// A feed refused for going past a limit: where, which, and the value allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{file} {} than the limit of {max} ({}); nothing was imported. If the feed is genuine, raise {}",
    kind.what(), kind.as_str(), kind.setting()
)]
pub struct LimitHit {
    pub kind: LimitKind,
    /// The file (or "the feed" for whole-feed limits).
    pub file: String,
    pub max: u64,
}

impl LimitHit {
    pub(crate) fn new(kind: LimitKind, file: &str, limits: &Limits) -> Self {
        LimitHit {
            kind,
            file: file.to_string(),
            max: kind.of(limits),
        }
    }
}
