//! SQLite: how a process learns, without asking the database, that another one changed the CRLs.
//!
//! The server must refuse a certificate revoked by `ca revoke` (local mode, another process on the
//! same database file) on the next request or handshake, not later. Reading the CRL counters from
//! SQLite before each one did that, at the cost of a round trip to a connection's thread per request
//! (about 40 % of a request's CPU on a keep-alive connection; BENCHMARKS.md, session 18).
//!
//! Instead, every commit that changes the CRLs or the revoked set (the transactions that call
//! `WriteTx::notify_crl_change`, whichever process runs them) then grows `<database>-crl` by one
//! byte, before the commit returns: before `ca revoke` reports the revocation done. A reader looks
//! at the file (one `stat`), and reads the database only when the file differs from what it was
//! before its last read of the database, or when that read is older than [`RECHECK`]: the bound on
//! what the file cannot tell (a writer that died between its commit and the file, a writer too old
//! to know the file, a file that cannot be written).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest a reader trusts an unchanged file without reading the database.
pub const RECHECK: Duration = Duration::from_secs(1);

/// `<database>-crl`, beside SQLite's `-wal` and `-shm`.
#[derive(Debug)]
pub struct CrlMark {
    db: PathBuf,
    path: PathBuf,
}

/// What the file looked like: its inode and length, `None` when it does not exist. Only grows while
/// it exists, so a change always shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlMarkSeen(Option<(u64, u64)>);

impl CrlMark {
    /// The file of the SQLite database at `db`.
    pub fn of(db: &Path) -> CrlMark {
        let mut name = db.as_os_str().to_owned();
        name.push("-crl");
        CrlMark {
            db: db.to_path_buf(),
            path: name.into(),
        }
    }

    /// After a commit that changed the CRLs: grows the file by one byte. Created when missing with
    /// the database file's permission bits and, when that is allowed (as root), its owner, as SQLite
    /// does for `-wal` and `-shm`: `ca` run as root leaves a file the server's user can grow.
    /// A failure is logged: readers then notice the change within [`RECHECK`].
    pub fn grow(&self) {
        let db = std::fs::metadata(&self.db).ok();
        let grown = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(db.as_ref().map_or(0o600, |m| m.mode() & 0o666))
            .open(&self.path)
            .and_then(|mut f| {
                if let (Some(db), Ok(mark)) = (&db, f.metadata()) {
                    if (mark.uid(), mark.gid()) != (db.uid(), db.gid()) {
                        // Allowed to root only; anyone else keeps the file as it is.
                        let _ = std::os::unix::fs::fchown(&f, Some(db.uid()), Some(db.gid()));
                    }
                }
                f.write_all(b"\n")
            });
        if let Err(e) = grown {
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "could not mark a CRL change for the other processes on this database: they notice it within a second"
            );
        }
    }

    /// The file as it is now; `None` when that cannot be told (the caller then reads the database).
    pub fn seen(&self) -> Option<CrlMarkSeen> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Some(CrlMarkSeen(Some((m.ino(), m.len())))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(CrlMarkSeen(None)),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_growth_shows_and_an_absent_file_is_a_state() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let db = dir.join("ca.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        let mark = CrlMark::of(&db);
        let absent = mark.seen().unwrap();
        assert_eq!(absent, CrlMarkSeen(None));
        let mut last = absent;
        for _ in 0..3 {
            mark.grow();
            let now = mark.seen().unwrap();
            assert_ne!(now, last, "a change in the same clock tick must show");
            last = now;
        }
        assert_eq!(mark.seen().unwrap(), last, "unchanged without a growth");
        let created = std::fs::metadata(dir.join("ca.db-crl")).unwrap();
        assert_eq!(created.mode() & 0o777, 0o640, "the database's permission bits");
        assert_eq!(created.len(), 3);
        std::fs::remove_file(dir.join("ca.db-crl")).unwrap();
        assert_eq!(mark.seen().unwrap(), absent);
    }
}
