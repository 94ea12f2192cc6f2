//! Physical line numbers as an editor shows them, for LF, CRLF and CR-only files: the
//! csv crate counts only `\n` in its positions (one line too few after a CRLF row that
//! it reads ahead of, every row on line 1 in a CR-only file), so the line breaks are
//! counted here, in the bytes the CSV reader is given, and a record's start byte (the
//! csv crate's byte position, which is exact) is turned into its line.
//!
//! Only the breaks between the last record asked about and what the CSV reader has read
//! ahead are kept, so the memory is bounded by the reader's buffer and one row.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::rc::Rc;

/// The lines seen so far: where each starts and whether it is empty.
#[derive(Debug)]
pub(super) struct Lines {
    /// Lines not yet passed by a record: (first byte, empty, after a CRLF).
    ahead: VecDeque<(u64, bool, bool)>,
    /// The line the last record asked about is on (0 before the first).
    line: u64,
    /// Bytes seen so far.
    offset: u64,
    /// The last byte seen was `\r` (a `\n` right after it ends the same line).
    after_cr: bool,
    /// The last line in `ahead` has had no byte yet (so whether it is empty is unknown).
    fresh: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            ahead: VecDeque::from([(0, false, false)]),
            line: 0,
            offset: 0,
            after_cr: false,
            fresh: true,
        }
    }
}

impl Lines {
    fn see(&mut self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let next = self.offset + i as u64 + 1;
            let is_break = b == b'\r' || b == b'\n';
            if b == b'\n' && self.after_cr {
                // CRLF: one break; the line starts after the `\n`.
                if let Some(last) = self.ahead.back_mut() {
                    last.0 = next;
                    last.2 = true;
                }
            } else {
                if self.fresh {
                    if let Some(last) = self.ahead.back_mut() {
                        last.1 = is_break;
                    }
                    self.fresh = false;
                }
                if is_break {
                    self.ahead.push_back((next, false, false));
                    self.fresh = true;
                }
            }
            self.after_cr = b == b'\r';
        }
        self.offset += bytes.len() as u64;
    }

    /// The 1-based line of a record the csv crate says starts at `offset`. That offset
    /// is where the reader stood, before the empty lines it skips (and, after a CRLF,
    /// possibly on its `\n`), so the record's line is the first non-empty one from
    /// there. Offsets must not go backwards.
    pub fn line_at(&mut self, offset: u64) -> u64 {
        let mut empty = false;
        while let Some(&(start, blank, crlf)) = self.ahead.front() {
            let reached = start <= offset || (crlf && start == offset + 1);
            if !reached && !empty {
                break;
            }
            self.ahead.pop_front();
            self.line += 1;
            empty = blank && start >= offset;
        }
        self.line.max(1)
    }
}

/// A reader that tells `Lines` about every byte it passes on.
pub(super) struct Counting<R> {
    inner: R,
    lines: Rc<RefCell<Lines>>,
}

impl<R: Read> Counting<R> {
    pub fn new(inner: R) -> (Self, Rc<RefCell<Lines>>) {
        let lines = Rc::new(RefCell::new(Lines::default()));
        (
            Counting {
                inner,
                lines: lines.clone(),
            },
            lines,
        )
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.lines.borrow_mut().see(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], chunk: usize, record_starts: &[u64]) -> Vec<u64> {
        let mut l = Lines::default();
        for c in text.chunks(chunk) {
            l.see(c);
        }
        record_starts.iter().map(|&o| l.line_at(o)).collect()
    }

    #[test]
    fn lf_crlf_and_cr_count_the_same_and_chunks_do_not_matter() {
        // "ab" on line 1, "c" on line 2, an empty line 3, "d" on line 4. The record starts
        // are where the csv crate may stand: after the previous record's break, before
        // the empty line, and after a CRLF's `\r` as well as after its `\n`.
        for (text, starts) in [
            (&b"ab\nc\n\nd"[..], &[0, 3, 5][..]),
            (b"ab\r\nc\r\n\r\nd", &[0, 4, 7]),
            (b"ab\r\nc\r\n\r\nd", &[0, 3, 6]),
            (b"ab\r\nc\r\n\r\nd", &[0, 3, 8]),
            (b"ab\rc\r\rd", &[0, 3, 5]),
        ] {
            for chunk in [1, 2, 3, 64] {
                assert_eq!(
                    lines(text, chunk, starts),
                    [1, 2, 4],
                    "{text:?} in chunks of {chunk}, starts {starts:?}"
                );
            }
        }
    }
}
