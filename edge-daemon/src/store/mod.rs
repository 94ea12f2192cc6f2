//! The encrypted SQLite store: key files, opening SQLCipher databases with a raw key, rekey.
//!
//! Every database connection in the edge goes through [`open`], so the rules live in one
//! place: a raw 256-bit key (a passphrase would cost a KDF run, ~300 ms, per connection),
//! WAL journaling, and a page cache sized on purpose because encrypted reads are several
//! times slower with SQLite's small default cache.

pub mod migrate;

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;
use rusqlite::{Connection, OpenFlags};

/// File name of the database inside a data directory.
pub const DB_FILE: &str = "garasi.db";
/// Default key file name inside a data directory.
pub const KEY_FILE: &str = "db.key";

/// What can go wrong opening or managing the store. Messages say what to do; none of them
/// ever contains key material.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database key file {path} is missing: restore db.key from your backup into the data directory (or pass --key-file); without the key the database cannot be read")]
    KeyMissing { path: PathBuf },
    #[error("database key file {path} is malformed: it must hold exactly 64 hexadecimal characters (a 256-bit raw key)")]
    KeyMalformed { path: PathBuf },
    #[error("database key file {path} is readable by other users (mode {mode:o}): run `chmod 600 {path}`")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("database {path} does not exist: run `garasi-edge init --data-dir DIR` first")]
    DbMissing { path: PathBuf },
    #[error("database {path} is a plain, unencrypted SQLite file: refusing to use it. Move it aside and run `garasi-edge init`")]
    Plaintext { path: PathBuf },
    #[error("the key in {key_path} does not open database {path}: wrong key, or not a Garasi database. Use the key file created together with this database")]
    WrongKey { path: PathBuf, key_path: PathBuf },
    #[error("{path} already exists: refusing to overwrite an existing database or key")]
    AlreadyExists { path: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Migration(#[from] migrate::MigrationError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A 256-bit SQLCipher raw key. `Debug` is redacted so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub struct DbKey([u8; 32]);

impl fmt::Debug for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DbKey(<redacted>)")
    }
}

impl DbKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        DbKey(k)
    }

    /// Hex form, as written in key files and accepted by `PRAGMA key = "x'…'"`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, StoreError> {
        let malformed = || StoreError::KeyMalformed {
            path: path.to_path_buf(),
        };
        let t = text.trim();
        if t.len() != 64 {
            return Err(malformed());
        }
        let bytes = hex::decode(t).map_err(|_| malformed())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| malformed())?;
        Ok(DbKey(arr))
    }

    /// Reads a key file, refusing one that other users can read.
    pub fn read(path: &Path) -> Result<Self, StoreError> {
        let mut f = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::KeyMissing {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = f.metadata().map_err(io_err(path))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::KeyPermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut s = String::new();
        f.read_to_string(&mut s).map_err(io_err(path))?;
        Self::parse(&s, path)
    }

    /// Writes the key to a new file with mode 0600 and fsyncs it. Never overwrites.
    pub fn write_new(&self, path: &Path) -> Result<(), StoreError> {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                StoreError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path)(e)
            }
        })?;
        f.write_all(format!("{}\n", self.to_hex()).as_bytes())
            .map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
        Ok(())
    }
}

/// How a connection will be used; decides its page cache.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// The single writer: a 64 MiB cache (encrypted reads are ~1.5x plain with it, ~4x without).
    Writer,
    /// Readers for API queries: a 16 MiB cache each.
    Reader,
}

/// Opens an existing encrypted database and proves the key works before returning.
pub fn open(
    path: &Path,
    key: &DbKey,
    key_path: &Path,
    role: Role,
) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::DbMissing {
            path: path.to_path_buf(),
        });
    }
    let flags = match role {
        Role::Writer => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        // Readers still need write access to the WAL index (shm).
        Role::Reader => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    };
    let conn = Connection::open_with_flags(path, flags)?;
    apply_key(&conn, key)?;
    // The first read decrypts page 1: that is where a wrong key shows.
    if conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_err()
    {
        return Err(if is_plaintext_sqlite(path) {
            StoreError::Plaintext {
                path: path.to_path_buf(),
            }
        } else {
            StoreError::WrongKey {
                path: path.to_path_buf(),
                key_path: key_path.to_path_buf(),
            }
        });
    }
    configure(&conn, role)?;
    let mut conn = conn;
    if let Role::Writer = role {
        // Every write transaction takes the write lock when it begins. A deferred one
        // that read first and then wrote could not be retried by the busy handler when
        // another writer (telemetry's batches) committed in between: SQLite answers
        // "database is locked" at once. Immediate ones wait (busy_timeout) instead.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    }
    Ok(conn)
}

/// Cipher settings beyond the key. A raw key skips the KDF; HMAC-SHA1 (still a sound
/// MAC) instead of SQLCipher 4's SHA512 keeps the file readable by Debian 12's `sqlcipher`
/// CLI (SQLCipher 3.x) in an emergency: `PRAGMA key = "x'<db.key>'"; PRAGMA
/// cipher_page_size = 4096;`. AES-256 page encryption is the same either way.
pub const CIPHER_SETTINGS: &str = "PRAGMA cipher_page_size = 4096; PRAGMA cipher_hmac_algorithm = HMAC_SHA1; PRAGMA cipher_kdf_algorithm = PBKDF2_HMAC_SHA1;";

fn apply_key(conn: &Connection, key: &DbKey) -> Result<(), StoreError> {
    // execute_batch errors carry SQLite's message, never the statement text, so the key
    // cannot leak through an error.
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\"; {CIPHER_SETTINGS}",
        key.to_hex()
    ))?;
    Ok(())
}

fn configure(conn: &Connection, role: Role) -> Result<(), StoreError> {
    let cache_kib = match role {
        Role::Writer => 65536,
        Role::Reader => 16384,
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // NORMAL in WAL mode survives a process crash (kill -9) intact; a power cut may lose
    // the last commits, never corrupt. See README "Durability".
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -{cache_kib}; PRAGMA temp_store = MEMORY;"
    ))?;
    Ok(())
}

fn is_plaintext_sqlite(path: &Path) -> bool {
    let mut header = [0u8; 16];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok()
        && &header == b"SQLite format 3\0"
}

/// Paths of one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub dir: PathBuf,
    pub db: PathBuf,
    pub key: PathBuf,
}

impl DataDir {
    pub fn new(dir: &Path, key_file: Option<&Path>) -> Self {
        DataDir {
            dir: dir.to_path_buf(),
            db: dir.join(DB_FILE),
            key: key_file
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.join(KEY_FILE)),
        }
    }

    fn pending_key(&self) -> PathBuf {
        let mut p = self.key.clone().into_os_string();
        p.push(".new");
        PathBuf::from(p)
    }

    /// Creates the directory (0700), a fresh key file (0600) and an empty encrypted
    /// database with the migration history table. Refuses to touch an existing database.
    pub fn init(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err(&self.dir))?;
        }
        if self.db.exists() {
            return Err(StoreError::AlreadyExists {
                path: self.db.clone(),
            });
        }
        let key = DbKey::generate();
        key.write_new(&self.key)?;
        let conn = Connection::open(&self.db)?;
        apply_key(&conn, &key)?;
        configure(&conn, Role::Writer)?;
        migrate::ensure_history_table(&conn)?;
        Ok(())
    }

    /// Reads the key, finishing an interrupted rekey if one left a pending key behind.
    pub fn load_key(&self) -> Result<DbKey, StoreError> {
        let pending = self.pending_key();
        if pending.exists() {
            // A rekey wrote the new key, then maybe re-encrypted, then crashed before the
            // rename. Whichever key opens the database is the right one.
            let new_key = DbKey::read(&pending)?;
            if open(&self.db, &new_key, &pending, Role::Writer).is_ok() {
                fs::rename(&pending, &self.key).map_err(io_err(&self.key))?;
                tracing::warn!(key_file = %self.key.display(), "finished an interrupted rekey");
                return Ok(new_key);
            }
            fs::remove_file(&pending).map_err(io_err(&pending))?;
        }
        DbKey::read(&self.key)
    }

    pub fn open(&self, role: Role) -> Result<Connection, StoreError> {
        let key = self.load_key()?;
        open(&self.db, &key, &self.key, role)
    }

    /// Re-encrypts the database with a new random key. Crash-safe: the new key is made
    /// durable first, and [`DataDir::load_key`] finishes whichever step was interrupted.
    pub fn rekey(&self) -> Result<(), StoreError> {
        let key = self.load_key()?;
        let conn = open(&self.db, &key, &self.key, Role::Writer)?;
        let new_key = DbKey::generate();
        let pending = self.pending_key();
        new_key.write_new(&pending)?;
        // SQLCipher re-encrypts in rollback-journal mode; go back to WAL afterwards.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")?;
        conn.execute_batch(&format!("PRAGMA rekey = \"x'{}'\";", new_key.to_hex()))?;
        conn.execute_batch("PRAGMA journal_mode = WAL;")?;
        drop(conn);
        fs::rename(&pending, &self.key).map_err(io_err(&self.key))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_open_wrong_key_plaintext_and_rekey() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(&tmp.path().join("d"), None);
        dd.init().unwrap();
        let conn = dd.open(Role::Writer).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('hello');")
            .unwrap();
        drop(conn);
        let header = fs::read(&dd.db).unwrap();
        assert_ne!(&header[..16], b"SQLite format 3\0");

        // Wrong key.
        let other = DbKey::generate();
        let err = open(&dd.db, &other, &dd.key, Role::Writer).unwrap_err();
        assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
        assert!(!err.to_string().contains(&other.to_hex()));

        // Rekey keeps the data and retires the old key.
        let old = dd.load_key().unwrap();
        dd.rekey().unwrap();
        let new = dd.load_key().unwrap();
        assert_ne!(old, new);
        assert!(matches!(
            open(&dd.db, &old, &dd.key, Role::Writer),
            Err(StoreError::WrongKey { .. })
        ));
        let conn = dd.open(Role::Reader).unwrap();
        let v: String = conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "hello");

        // Plain SQLite file is named as such.
        let plain = tmp.path().join("plain.db");
        Connection::open(&plain)
            .unwrap()
            .execute_batch("CREATE TABLE t(x);")
            .unwrap();
        let err = open(&plain, &new, &dd.key, Role::Writer).unwrap_err();
        assert!(matches!(err, StoreError::Plaintext { .. }), "{err}");

        // Missing key file.
        let dd2 = DataDir::new(&tmp.path().join("d"), Some(&tmp.path().join("nokey")));
        assert!(matches!(
            dd2.open(Role::Writer),
            Err(StoreError::KeyMissing { .. })
        ));
        // Re-init refuses.
        assert!(matches!(dd.init(), Err(StoreError::AlreadyExists { .. })));
    }

    #[test]
    fn debug_never_shows_key() {
        let k = DbKey::generate();
        assert_eq!(format!("{k:?}"), "DbKey(<redacted>)");
    }
}

/// Shared handle on the node's database: a writer for small module writes and a pool of
/// readers for API queries. Bulk writers (telemetry) open their own connection instead,
/// so a big batch never queues behind an API request.
#[derive(Clone)]
pub struct Store {
    inner: std::sync::Arc<StoreInner>,
}

struct StoreInner {
    dd: DataDir,
    key: DbKey,
    writer: parking_lot::Mutex<Connection>,
    readers: parking_lot::Mutex<Vec<Connection>>,
}

/// Failure of a store call made from async code.
#[derive(Debug, thiserror::Error)]
pub enum StoreCallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database task failed: {0}")]
    Task(String),
}

const MAX_IDLE_READERS: usize = 4;

impl Store {
    pub fn open(dd: &DataDir) -> Result<Store, StoreError> {
        let key = dd.load_key()?;
        let writer = open(&dd.db, &key, &dd.key, Role::Writer)?;
        Ok(Store {
            inner: std::sync::Arc::new(StoreInner {
                dd: dd.clone(),
                key,
                writer: parking_lot::Mutex::new(writer),
                readers: parking_lot::Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.inner.dd
    }

    /// A new dedicated connection (about 0.3 ms with a raw key).
    pub fn connect(&self, role: Role) -> Result<Connection, StoreError> {
        open(&self.inner.dd.db, &self.inner.key, &self.inner.dd.key, role)
    }

    /// Runs `f` on the shared writer, on the calling thread (for start-up and CLI).
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreCallError> {
        let mut guard = self.inner.writer.lock();
        Ok(f(&mut guard)?)
    }

    /// Runs `f` on the shared writer in the blocking pool.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreCallError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_blocking(f))
            .await
            .map_err(|e| StoreCallError::Task(e.to_string()))?
    }

    /// Runs `f` on a pooled reader in the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreCallError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(f))
            .await
            .map_err(|e| StoreCallError::Task(e.to_string()))?
    }

    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreCallError> {
        let pooled = self.inner.readers.lock().pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect(Role::Reader)?,
        };
        let out = f(&conn);
        {
            let mut v = self.inner.readers.lock();
            if v.len() < MAX_IDLE_READERS {
                v.push(conn);
            }
        }
        Ok(out?)
    }
}
