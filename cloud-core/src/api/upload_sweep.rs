//! Leftover upload files: a cloud killed during an upload or an import leaves its
//! temporary file (up to the upload limit, 512 MiB by default) behind; `serve` removes
//! the old ones at start.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// Every upload file's name starts with this.
pub const UPLOAD_PREFIX: &str = "garasi-upload-";

/// Old enough that no upload or import of a running cloud can still hold it (the upload
/// dir may be shared with other clouds on the machine, e.g. the system's temp dir).
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Removes upload files in `dir` last modified more than `older_than` ago; returns how
/// many. Errors are logged, never fatal: a leftover only costs disk.
pub fn sweep(dir: &Path, older_than: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let is_upload = e.file_name().to_string_lossy().starts_with(UPLOAD_PREFIX);
        let Ok(meta) = e.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > older_than);
        if is_upload && meta.is_file() && old {
            match std::fs::remove_file(e.path()) {
                Ok(()) => removed += 1,
                Err(err) => tracing::warn!(file = %e.path().display(), error = %err,
                    "cannot remove a leftover upload file"),
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed leftover upload files");
    }
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_old_upload_files_go() {
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join(format!("{UPLOAD_PREFIX}old"));
        let fresh = d.path().join(format!("{UPLOAD_PREFIX}fresh"));
        let other = d.path().join("someone-elses-old-file");
        for p in [&old, &fresh, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
        for p in [&old, &other] {
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(two_days_ago).unwrap();
        }
        assert_eq!(sweep(d.path(), STALE_AFTER), 1);
        assert!(!old.exists() && fresh.exists() && other.exists());
    }
}
