//! The admin bearer token: compared in constant time, read from its file at start (a
//! file of ours readable by others is tightened to 0600, like the edge's `db.key`; one
//! we cannot change, such as a root-owned file or a read-only secret volume, is used
//! with a warning, unless anyone may write it), read again on SIGHUP (after an operator
//! replaced it), and rotated through the API (a new random token written to the file,
//! 0600, atomically, and in force at once; rotations one at a time).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

/// Shortest admin token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the admin token in {} is shorter than {MIN_TOKEN_CHARS} characters: use a long random token",
        path.display()
    )]
    TooShort { path: PathBuf },
    #[error(
        "this cloud's admin token was not read from a file, so a new one could not be kept: \
         start it with --admin-token-file to rotate through the API"
    )]
    NoFile,
    #[error(
        "the admin token file {} can be written by anyone (mode {mode:o}) and this process \
         cannot change that: anyone on this machine could replace the token. Make it \
         readable by the cloud's user only (chmod 600, or 0400 on a secret volume)",
        path.display()
    )]
    WorldWritable { path: PathBuf, mode: u32 },
}

/// The admin token in force, and the file it lives in.
pub struct AdminToken {
    current: RwLock<Arc<str>>,
    file: Option<PathBuf>,
    /// Held while the file is read or written and the token in force replaced, so the
    /// file and the token in force always agree.
    file_lock: Mutex<()>,
}

impl AdminToken {
    /// A token that is not kept in a file (tests, embedding); it cannot be rotated.
    pub fn fixed(token: Arc<str>) -> Self {
        AdminToken {
            current: RwLock::new(token),
            file: None,
            file_lock: Mutex::new(()),
        }
    }

    /// Reads the token from `path`, making the file 0600 if others could read it.
    pub fn from_file(path: &Path) -> Result<Self, AdminTokenError> {
        let token = read(path)?;
        Ok(AdminToken {
            current: RwLock::new(token),
            file: Some(path.to_path_buf()),
            file_lock: Mutex::new(()),
        })
    }

    /// Whether `candidate` is the token. Constant time: the comparison must not tell a
    /// guesser how much it got right.
    pub fn matches(&self, candidate: &str) -> bool {
        let current = self.current.read().clone();
        subtle::ConstantTimeEq::ct_eq(candidate.as_bytes(), current.as_bytes()).into()
    }

    /// Reads the file again (SIGHUP); the old token stops working at once. A file that
    /// cannot be used leaves the token in force unchanged.
    pub fn reload(&self) -> Result<(), AdminTokenError> {
        let path = self.file.as_deref().ok_or(AdminTokenError::NoFile)?;
        let _one_at_a_time = self.file_lock.lock();
        let token = read(path)?;
        *self.current.write() = token;
        Ok(())
    }

    /// A new random token, written to the file (0600, replaced atomically) and in force
    /// at once; the old one stops working. Returns the new token (shown once).
    pub fn rotate(&self) -> Result<String, AdminTokenError> {
        let path = self.file.as_deref().ok_or(AdminTokenError::NoFile)?;
        let _one_at_a_time = self.file_lock.lock();
        let token = crate::store::random_token();
        write_private(path, &token).map_err(|source| AdminTokenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        *self.current.write() = Arc::from(token.as_str());
        Ok(token)
    }
}

/// What to do about a token file's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perms {
    /// Only its owner may read or write it.
    Private,
    /// Ours, and others may read it: make it 0600.
    Tighten,
    /// Others may read it but it is not ours to change (root-owned, a read-only secret
    /// volume): use it, and say how to fix it.
    Warn,
    /// Anyone may write it and we cannot change that: refuse.
    Refuse,
}

/// `mode`: the file's permission bits; `can_change`: whether this process may chmod it
/// (it owns the file on a writable file system).
fn perms(mode: u32, can_change: bool) -> Perms {
    match (mode & 0o077 != 0, can_change) {
        (false, _) => Perms::Private,
        (true, true) => Perms::Tighten,
        (true, false) if mode & 0o002 != 0 => Perms::Refuse,
        (true, false) => Perms::Warn,
    }
}

/// Whether this process owns `meta`'s file (or is root): the owner of `/proc/self` is
/// the process's effective user. Unknown (no /proc): assume it does and let chmod say.
fn owned(meta: &std::fs::Metadata) -> bool {
    match std::fs::metadata("/proc/self") {
        Ok(me) => me.uid() == 0 || me.uid() == meta.uid(),
        Err(_) => true,
    }
}

fn read(path: &Path) -> Result<Arc<str>, AdminTokenError> {
    let io = |source| AdminTokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    let mut action = perms(mode, owned(&meta));
    if action == Perms::Tighten {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                file = %path.display(),
                was = format!("{mode:o}"),
                "the admin token file was readable by others: it is now 0600 (create it \
                 with `umask 077` or `garasi-cloud admin-token new`)"
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                action = perms(mode, false);
            }
            Err(e) => return Err(io(e)),
        }
    }
    match action {
        Perms::Refuse => {
            return Err(AdminTokenError::WorldWritable {
                path: path.to_path_buf(),
                mode,
            })
        }
        Perms::Warn => tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:o}"),
            "the admin token file is readable by others and this process cannot change \
             that (another owner, or a read-only volume): make it readable by the cloud's \
             user only (chmod 600, or 0400 on a secret volume)"
        ),
        Perms::Private | Perms::Tighten => {}
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_CHARS {
        return Err(AdminTokenError::TooShort {
            path: path.to_path_buf(),
        });
    }
    Ok(Arc::from(token))
}

/// Writes `text` to `path` readable by the owner only, replacing it atomically (a
/// temporary file of its own beside it, 0600 from the start, then renamed over it).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut f = tempfile::NamedTempFile::new_in(dir)?;
    f.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.as_file().sync_all()?;
    f.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readable_file_is_tightened_and_rotation_writes_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "a-long-enough-admin-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let t = AdminToken::from_file(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert!(t.matches("a-long-enough-admin-token"));
        let new = t.rotate().unwrap();
        assert!(t.matches(&new) && !t.matches("a-long-enough-admin-token"));
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), new);
        assert_eq!(mode(&path), 0o600);
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(t.reload(), Err(AdminTokenError::TooShort { .. })));
        assert!(t.matches(&new), "a bad file leaves the token in force");
        assert!(matches!(
            AdminToken::fixed(Arc::from("x".repeat(20))).rotate(),
            Err(AdminTokenError::NoFile)
        ));
    }

    #[test]
    fn a_file_we_cannot_change_is_used_with_a_warning_unless_anyone_may_write_it() {
        assert_eq!(perms(0o600, false), Perms::Private);
        assert_eq!(perms(0o400, false), Perms::Private);
        assert_eq!(perms(0o644, true), Perms::Tighten);
        assert_eq!(perms(0o666, true), Perms::Tighten);
        // Root-owned 0644, or a read-only secret volume: used, with a warning (this used
        // to stop the cloud with a bare EPERM).
        assert_eq!(perms(0o644, false), Perms::Warn);
        assert_eq!(perms(0o440, false), Perms::Warn);
        assert_eq!(perms(0o666, false), Perms::Refuse);
        assert_eq!(perms(0o602, false), Perms::Refuse);
    }

    #[test]
    fn parallel_rotations_leave_the_file_and_the_token_in_force_in_agreement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "a-long-enough-admin-token\n").unwrap();
        let t = Arc::new(AdminToken::from_file(&path).unwrap());
        let barrier = Arc::new(std::sync::Barrier::new(12));
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let (t, b) = (t.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    t.rotate()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().expect("every rotation succeeds");
        }
        let in_file = std::fs::read_to_string(&path).unwrap();
        assert!(
            t.matches(in_file.trim()),
            "the file's token is the one in force"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary files left");
    }
}
