//! Background CPU work that must not slow a person's read: decoding pushed batches,
//! storing them in SQLite and the background materialiser's folds run here, on threads
//! of their own at a lower scheduling priority (nice +10). When a reconnect storm
//! saturates the cores, Linux then gives a waiting admin read the CPU before the bulk
//! work (about 10 to 1), instead of sharing it evenly with every batch in flight; with
//! idle cores the bulk work runs at full speed as before. Writes are not helped: an
//! admin write or the materialiser waiting for SQLite's one writer waits for a push
//! running at this priority.

use std::sync::OnceLock;

/// How much lower bulk threads run (Linux nice increment; nice is per thread there).
pub const NICENESS: i32 = 10;
/// Bulk threads at most: the callers bound their own concurrency (decodes, stores); this only keeps a fault from making threads without end.
const MAX_THREADS: usize = 64;

static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();

/// The bulk runtime, built on first use and kept for the process's life (never dropped,
/// so it cannot be dropped inside an async context). None if it could not be built:
/// then bulk work runs on the caller's blocking pool at normal priority.
fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(MAX_THREADS)
                .thread_name("garasi-bulk")
                .on_thread_start(lower_priority)
                .build()
                .map_err(|e| tracing::warn!(error = %e, "no bulk threads; background work runs at normal priority"))
                .ok()
        })
        .as_ref()
}

fn lower_priority() {
    // `nice` changes the calling thread only on Linux, where each thread has its own;
    // elsewhere it would lower the whole process, once per bulk thread.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::nice(NICENESS) {
        tracing::warn!(error = %e, "could not lower a bulk thread's priority");
    }
}

/// Runs `f` on a bulk thread; await the handle from any runtime.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match runtime() {
        Some(rt) => rt.spawn_blocking(f),
        None => tokio::task::spawn_blocking(f),
    }
}

#[cfg(test)]
mod tests {
    /// The calling thread's nice value, from /proc (field 19 of its stat).
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bulk_work_runs_at_a_lower_priority_than_requests() {
        let here = tokio::task::spawn_blocking(own_nice).await.unwrap();
        let bulk = super::spawn_blocking(own_nice).await.unwrap();
        assert_eq!(bulk, (here + i64::from(super::NICENESS)).min(19));
        // And it stays lower on the next task on a reused thread.
        assert_eq!(super::spawn_blocking(own_nice).await.unwrap(), bulk);
        assert_eq!(own_nice(), here, "the caller's own thread is untouched");
    }
}
