//! Badge readers on serial lines (USB barcode and RFID readers in serial mode send one
//! badge per line). A reader thread per line reads with a short timeout, so it notices
//! shutdown, splits on CR or LF, and hands each line to dispatch, which signs the
//! badge's holder on or refuses the line (counted, logged without the badge number). A
//! reader that disappears (unplugged) is reopened every few seconds.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::service::Dispatch;

/// Longest line kept; a reader that never sends a line end is noise past this.
const MAX_LINE: usize = 256;

static BADGE_REFUSED: crate::lograte::LogRate =
    crate::lograte::LogRate::warn("dispatch.badge_refused", 10);
static BADGE_DROPPED: crate::lograte::LogRate =
    crate::lograte::LogRate::warn("dispatch.badge_dropped", 5);

/// Splits a byte stream into lines (CR, LF or CRLF); over-long lines come out as
/// `Err(())` once, then are skipped up to their end.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    overflow: bool,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Result<String, ()>)) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if self.overflow {
                    self.overflow = false;
                } else if !self.buf.is_empty() {
                    out(String::from_utf8(std::mem::take(&mut self.buf)).map_err(|_| ()));
                }
                self.buf.clear();
            } else if !self.overflow {
                self.buf.push(b);
                if self.buf.len() > MAX_LINE {
                    self.buf.clear();
                    self.overflow = true;
                    out(Err(()));
                }
            }
        }
    }
}

/// Starts the reader for `path`; it stops when `shutdown` fires.
pub fn spawn_reader(
    d: Arc<Dispatch>,
    path: PathBuf,
    baud: u32,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, ()>>(64);
    let terminal = path.display().to_string();
    let stop = shutdown.clone();
    tracker.spawn_blocking(move || read_loop(&path, baud, &tx, &stop));
    tracker.spawn(async move {
        loop {
            let line = tokio::select! {
                _ = shutdown.cancelled() => return,
                l = rx.recv() => match l { Some(l) => l, None => return },
            };
            let people = d.services.get::<super::People>();
            let outcome = match line {
                Ok(text) => d.badge_scanned(&terminal, &text).await,
                Err(()) => {
                    let r = crate::modules::auth::service::Refusal::Garbage(
                        "an over-long or non-text line".into(),
                    );
                    Err(match people {
                        Some(p) => p.count_refusal("badge", r),
                        None => r,
                    })
                }
            };
            match outcome {
                Ok(p) => tracing::info!(terminal = %terminal, person = %p.id, "badge sign-on"),
                // A reader sending noise (or someone scanning junk) repeats this at will;
                // the refusal describes a garbage line by length and classes only.
                Err(r) if BADGE_REFUSED.allow() => {
                    tracing::warn!(terminal = %terminal, reason = r.reason(), "badge refused: {r}")
                }
                Err(_) => {}
            }
        }
    });
}

fn read_loop(
    path: &std::path::Path,
    baud: u32,
    tx: &tokio::sync::mpsc::Sender<Result<String, ()>>,
    stop: &CancellationToken,
) {
    let mut warned = false;
    while !stop.is_cancelled() {
        let port = serialport::new(path.to_string_lossy(), baud)
            .timeout(Duration::from_millis(200))
            .open();
        let mut port = match port {
            Ok(p) => {
                tracing::info!(reader = %path.display(), "badge reader open");
                warned = false;
                p
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(reader = %path.display(), error = %e, "badge reader cannot be opened; retrying every 3 s");
                    warned = true;
                }
                for _ in 0..15 {
                    if stop.is_cancelled() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                continue;
            }
        };
        let mut split = LineSplitter::default();
        let mut buf = [0u8; 128];
        while !stop.is_cancelled() {
            match port.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                Ok(n) => split.push(&buf[..n], |line| {
                    // Full queue: a person scanning 64 badges faster than we check
                    // them. Dropping is the only option; it is logged.
                    if tx.try_send(line).is_err() && BADGE_DROPPED.allow() {
                        tracing::warn!(
                            "badge lines arrive faster than they are checked; one dropped"
                        );
                    }
                }),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(reader = %path.display(), error = %e, "badge reader failed; reopening");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_any_line_end_and_long_noise_is_one_error() {
        let mut s = LineSplitter::default();
        let mut got = Vec::new();
        s.push(b"04A1B2\r\nEMP-", |l| got.push(l));
        s.push(b"0042\n\n\r", |l| got.push(l));
        s.push(&[b'x'; 600], |l| got.push(l));
        s.push(b"tail\nOK12\n", |l| got.push(l));
        s.push(&[0xff, 0xfe, b'\n'], |l| got.push(l));
        assert_eq!(
            got,
            vec![
                Ok("04A1B2".to_string()),
                Ok("EMP-0042".to_string()),
                Err(()),
                Ok("OK12".to_string()),
                Err(()),
            ]
        );
    }
}
