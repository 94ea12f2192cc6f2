//! The admin bearer token: compared in constant time, read from its file at start (a
//! file readable by others is tightened to 0600, like the edge's `db.key`), read again
//! on SIGHUP (after an operator replaced it), and rotated through the API (a new random
//! token written to the file, 0600, atomically, and in force at once).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

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
}

/// The admin token in force, and the file it lives in.
pub struct AdminToken {
    current: RwLock<Arc<str>>,
    file: Option<PathBuf>,
}

impl AdminToken {
    /// A token that is not kept in a file (tests, embedding); it cannot be rotated.
    pub fn fixed(token: Arc<str>) -> Self {
        AdminToken {
            current: RwLock::new(token),
            file: None,
        }
    }

    /// Reads the token from `path`, making the file 0600 if others could read it.
    pub fn from_file(path: &Path) -> Result<Self, AdminTokenError> {
        let token = read(path)?;
        Ok(AdminToken {
            current: RwLock::new(token),
            file: Some(path.to_path_buf()),
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
        let token = read(path)?;
        *self.current.write() = token;
        Ok(())
    }

    /// A new random token, written to the file (0600, replaced atomically) and in force
    /// at once; the old one stops working. Returns the new token (shown once).
    pub fn rotate(&self) -> Result<String, AdminTokenError> {
        let path = self.file.as_deref().ok_or(AdminTokenError::NoFile)?;
        let token = crate::store::random_token();
        write_private(path, &token).map_err(|source| AdminTokenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        *self.current.write() = Arc::from(token.as_str());
        Ok(token)
    }
}

fn read(path: &Path) -> Result<Arc<str>, AdminTokenError> {
    let io = |source| AdminTokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        tracing::warn!(
            file = %path.display(),
            was = format!("{mode:o}"),
            "the admin token file was readable by others: it is now 0600 (create it with \
             `umask 077` or `garasi-cloud admin-token new`)"
        );
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
/// temporary file beside it, made 0600 from the start, then renamed over it).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "admin.token".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // An existing temporary file keeps its mode: make sure.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
}
