//! Where a feed's files come from (a zip on disk or in memory, or a map of file name to
//! contents) and the reader every file is parsed through: it streams the file out of
//! the zip (never unpacked whole) and stops, naming the limit, when the feed unpacks to
//! too much or a row grows too long. The zip's central directory headers are counted
//! (with their name bytes) over the whole file before the zip library builds its
//! directory in memory, so no end record can make it read more than the limit.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::rc::Rc;

use crate::gtfs::limits::{LimitHit, LimitKind, Limits};
use crate::gtfs::{GtfsError, Progress};

/// Directory bytes (names, extra fields, comments) allowed per allowed file: 1 MiB for
/// the default 1,000 files.
const MAX_NAME_BYTES_PER_FILE: u64 = 1024;

/// A zip's reader: a file or bytes in memory.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

enum Source<'a> {
    Zip(Box<zip::ZipArchive<Box<dyn ReadSeek + 'a>>>),
    Map(&'a BTreeMap<String, Vec<u8>>),
}

/// What every file of one import shares: the limits, the bytes unpacked so far, and the
/// limit a reader hit (set by the reader, read by whoever sees its error).
pub(in crate::gtfs) struct Budget {
    pub limits: Limits,
    unpacked: Cell<u64>,
    /// Estimated bytes of what the import keeps.
    held: Cell<u64>,
    /// Bytes read from the file being parsed, and where its current row began.
    file_read: Cell<u64>,
    row_start: Cell<u64>,
    pub hit: Cell<Option<LimitKind>>,
}

/// The feed's files, opened one at a time.
pub(in crate::gtfs) struct Files<'a> {
    source: Source<'a>,
    /// File name (folders dropped) -> zip entry index.
    names: BTreeMap<String, usize>,
    pub progress: Option<&'a Progress>,
    pub(super) budget: Rc<Budget>,
}

impl<'a> Files<'a> {
    /// Opens a zip, refusing one whose directory claims more entries than allowed.
    pub fn zip(
        mut reader: Box<dyn ReadSeek + 'a>,
        limits: Limits,
        progress: Option<&'a Progress>,
    ) -> Result<Self, GtfsError> {
        let max_name_bytes = limits.max_files.saturating_mul(MAX_NAME_BYTES_PER_FILE);
        if let Some((n, names)) = directory_size(&mut reader, limits.max_files, max_name_bytes) {
            if n > limits.max_files || names > max_name_bytes {
                return Err(LimitHit::new(LimitKind::Files, "the feed", &limits).into());
            }
        }
        let mut zip = zip::ZipArchive::new(reader).map_err(|e| GtfsError::NotZip(e.to_string()))?;
        let mut names = BTreeMap::new();
        let mut total = 0u64;
        for i in 0..zip.len() {
            let f = zip
                .by_index_raw(i)
                .map_err(|e| GtfsError::NotZip(e.to_string()))?;
            if f.is_dir() {
                continue;
            }
            // Feeds zipped from a folder keep the folder in the name: use the file name.
            let name = f.name().rsplit('/').next().unwrap_or_default().to_string();
            if name.starts_with('.') || name.is_empty() {
                continue;
            }
            total = total.saturating_add(f.size());
            names.insert(name, i);
        }
        if let Some(p) = progress {
            p.total_bytes
                .store(total, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Files {
            source: Source::Zip(Box::new(zip)),
            names,
            progress,
            budget: Budget::new(limits),
        })
    }

    /// Files given by name (tests, tools).
    pub fn map(files: &'a BTreeMap<String, Vec<u8>>, limits: Limits) -> Self {
        Files {
            source: Source::Map(files),
            names: files
                .keys()
                .enumerate()
                .map(|(i, k)| (k.clone(), i))
                .collect(),
            progress: None,
            budget: Budget::new(limits),
        }
    }

    /// The import's shared budget (limits, memory kept).
    pub fn budget(&self) -> Rc<Budget> {
        self.budget.clone()
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.names.keys()
    }

    /// A reader of one file through the budget (None: the feed has no such file).
    pub(super) fn open(&mut self, name: &str) -> Result<Option<Box<dyn Read + '_>>, GtfsError> {
        let Some(&index) = self.names.get(name) else {
            return Ok(None);
        };
        let budget = self.budget.clone();
        let inner: Box<dyn Read + '_> = match &mut self.source {
            Source::Zip(zip) => Box::new(
                zip.by_index(index)
                    .map_err(|e| GtfsError::NotZip(format!("{name}: {e}")))?,
            ),
            Source::Map(m) => match m.get(name) {
                Some(bytes) => Box::new(&bytes[..]),
                None => return Ok(None),
            },
        };
        budget.start_file();
        let mut r = std::io::BufReader::new(Guarded { inner, budget });
        // A UTF-8 byte order mark is not part of the first column's name.
        let bom = std::io::BufRead::fill_buf(&mut r)
            .map(|b| b.starts_with(b"\xef\xbb\xbf"))
            .unwrap_or(false);
        if bom {
            std::io::BufRead::consume(&mut r, 3);
        }
        Ok(Some(Box::new(r)))
    }
}

impl Budget {
    fn new(limits: Limits) -> Rc<Self> {
        Rc::new(Budget {
            limits,
            unpacked: Cell::new(0),
            held: Cell::new(0),
            file_read: Cell::new(0),
            row_start: Cell::new(0),
            hit: Cell::new(None),
        })
    }

    /// Bytes read from the file being parsed.
    pub fn file_read(&self) -> u64 {
        self.file_read.get()
    }

    /// Counts `bytes` more kept by the import (parsing `file`); refuses the feed past
    /// `max_memory_bytes`.
    pub fn hold(&self, bytes: usize, file: &str) -> Result<(), GtfsError> {
        self.held.set(self.held.get().saturating_add(bytes as u64));
        if self.held.get() > self.limits.max_memory_bytes {
            return Err(LimitHit::new(LimitKind::Memory, file, &self.limits).into());
        }
        Ok(())
    }
}

/// Bytes a row may run past `max_row_bytes` before it is noticed: the BOM check's and
/// the CSV reader's buffers (8 KiB each) read ahead, so the count includes that much.
const READ_AHEAD: u64 = 32 * 1024;

/// One file's reader: counts what it unpacks against the feed's budget and the bytes
/// since the last complete row.
struct Guarded<'r> {
    inner: Box<dyn Read + 'r>,
    budget: Rc<Budget>,
}

impl Budget {
    /// Starts measuring a new file.
    pub fn start_file(&self) {
        self.file_read.set(0);
        self.row_start.set(0);
    }

    /// Counts `n` bytes made for the import without being read from the zip (a TODS
    /// supplement's values copied into the rows they update); false, with the limit
    /// marked as hit, once the feed is past its unpacked bytes.
    pub fn add_unpacked(&self, n: u64) -> bool {
        self.unpacked.set(self.unpacked.get().saturating_add(n));
        if self.unpacked.get() > self.limits.max_unpacked_bytes {
            self.hit.set(Some(LimitKind::UnpackedBytes));
            return false;
        }
        true
    }

    /// Marks the end of a complete row: the next one is measured from here.
    pub fn mark_row(&self) {
        self.row_start.set(self.file_read.get());
    }
}

impl Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)? as u64;
        let b = &self.budget;
        b.file_read.set(b.file_read.get() + n);
        b.unpacked.set(b.unpacked.get() + n);
        let over = if b.unpacked.get() > b.limits.max_unpacked_bytes {
            Some(LimitKind::UnpackedBytes)
        } else if b.file_read.get() - b.row_start.get() > b.limits.max_row_bytes + READ_AHEAD {
            Some(LimitKind::RowBytes)
        } else {
            None
        };
        if let Some(kind) = over {
            b.hit.set(Some(kind));
            return Err(std::io::Error::other(kind.as_str()));
        }
        Ok(n as usize)
    }
}

/// Central directory headers in the whole zip, and the bytes of their names, extra
/// fields and comments: what the zip library would hold in memory at most, whatever the
/// end records (zip32 or zip64, on this disk or in total, the last or an earlier one)
/// claim. Every entry the library reads starts with this signature at its own place, so
/// counting the signatures bounds it. Stops early once past `max_entries` or
/// `max_name_bytes`; None when the zip cannot be read (the zip library then says why).
fn directory_size(
    r: &mut dyn ReadSeek,
    max_entries: u64,
    max_name_bytes: u64,
) -> Option<(u64, u64)> {
    const SIG: &[u8; 4] = b"PK\x01\x02";
    /// A central directory header's fixed part.
    const HEADER: usize = 46;
    r.seek(SeekFrom::Start(0)).ok()?;
    let (mut entries, mut name_bytes) = (0u64, 0u64);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024 + HEADER);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Headers that start here fit in the buffer; later starts wait for more bytes.
        let complete = buf.len().saturating_sub(HEADER - 1);
        let mut i = 0;
        while i < complete {
            if buf[i] == b'P' && buf[i..i + 4] == *SIG {
                let u16_at = |o: usize| u64::from(u16::from_le_bytes([buf[i + o], buf[i + o + 1]]));
                entries += 1;
                name_bytes += u16_at(28) + u16_at(30) + u16_at(32);
                if entries > max_entries || name_bytes > max_name_bytes {
                    r.seek(SeekFrom::Start(0)).ok()?;
                    return Some((entries, name_bytes));
                }
            }
            i += 1;
        }
        buf.drain(..complete);
    }
    r.seek(SeekFrom::Start(0)).ok()?;
    Some((entries, name_bytes))
}
