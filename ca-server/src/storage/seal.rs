//! Sealing the audit log, so that someone who can write the database but does not hold the CA key
//! cannot rewrite or cut it unnoticed.
//!
//! - Every audit row carries a seal: HMAC-SHA256 over its id and chain hash, with a key derived from
//!   the CA key ([`crate::ca::CaSigner::audit_key`]). Recomputing the hash chain after an edit leaves
//!   the seals wrong; a deletion in the middle breaks the chain.
//! - Only cutting the tail keeps a valid (shorter) sealed chain: the head (last id and hash, sealed)
//!   is also kept in the file `audit-head` of the data directory, written after each transaction that
//!   appended audit rows. A head that names a record the database no longer holds, with that hash, is
//!   tampering; such a head is never overwritten (the evidence stays until an admin removes the file).
//!
//! A seal costs one HMAC (a microsecond), so every row gets one at no measurable cost to issuance.
//!
//! The head file is read at each write transaction's first audit row and written after its commit:
//! it is kept open between the two (one `stat` of its path tells whether it is still the file
//! there), and what it held when last read or written is kept parsed, so that a signing round spends
//! four system calls and one HMAC on it instead of fourteen calls and five.

use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::hmac;

/// The file holding the sealed chain head, in the data directory.
pub const HEAD_FILE: &str = "audit-head";

const HEAD_MAGIC: &str = "ca-audit-head-v1";

/// The sealing key and where the head is kept.
pub struct AuditSeal {
    key: hmac::Key,
    head_path: PathBuf,
    /// The head file as last opened here, while it is the file at `head_path`.
    kept: Mutex<Option<KeptHead>>,
}

/// The head file kept open, with its first two slots as last read or written here.
struct KeptHead {
    file: std::fs::File,
    /// Its device and inode: a file put at the path in its place is opened anew.
    id: (u64, u64),
    /// Up to two slots' bytes, as the file held them when last read or written here.
    bytes: Vec<u8>,
    /// Each of those slots parsed (see [`AuditSeal::parse_slot`]).
    slots: Vec<Option<Result<(i64, String), ()>>>,
}

impl std::fmt::Debug for AuditSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSeal")
            .field("head", &self.head_path)
            .field("key", &"[secret key elided]")
            .finish()
    }
}

/// What `audit-head` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// No file.
    Missing,
    /// A file that is not a head, or whose seal does not match (replaced or edited).
    Invalid(String),
    /// A sealed head: the last record's id and hash when it was written.
    Sealed { id: i64, hash: String },
}

fn hex(bytes: &[u8]) -> String {
    crate::ca::digest::hex(bytes)
}

impl AuditSeal {
    /// A seal with `key` (the CA's audit key) keeping its head in `data_dir`.
    pub fn new(key: &[u8], data_dir: &Path) -> AuditSeal {
        AuditSeal {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            head_path: data_dir.join(HEAD_FILE),
            kept: Mutex::new(None),
        }
    }

    /// The seal of an audit row.
    pub fn row_mac(&self, id: i64, hash: &str) -> String {
        hex(hmac::sign(&self.key, format!("row\u{1f}{id}\u{1f}{hash}").as_bytes()).as_ref())
    }

    /// Whether `mac` is the seal of that row (constant time).
    pub fn row_ok(&self, id: i64, hash: &str, mac: &str) -> bool {
        self.verify(&format!("row\u{1f}{id}\u{1f}{hash}"), mac)
    }

    fn head_mac(&self, id: i64, hash: &str) -> String {
        hex(hmac::sign(&self.key, format!("head\u{1f}{id}\u{1f}{hash}").as_bytes()).as_ref())
    }

    fn verify(&self, msg: &str, mac_hex: &str) -> bool {
        let Some(mac) = unhex(mac_hex) else {
            return false;
        };
        hmac::verify(&self.key, msg.as_bytes(), &mac).is_ok()
    }

    /// The path of the head file.
    pub fn head_path(&self) -> &Path {
        &self.head_path
    }

    /// Reads `audit-head`: the newer of its two slots that carries a valid seal.
    pub fn read_head(&self) -> Head {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slots = match self.current(&mut kept, false) {
            Ok(Some(k)) => &k.slots,
            Ok(None) => return Head::Missing,
            Err(e) => return Head::Invalid(format!("unreadable: {}", crate::error::Chain(&e))),
        };
        let mut best: Option<(i64, &str)> = None;
        let mut foreign = false;
        for slot in slots {
            match slot {
                Some(Ok((id, hash))) if best.is_none_or(|(b, _)| b < *id) => {
                    best = Some((*id, hash));
                }
                Some(Err(())) => foreign = true,
                Some(Ok(_)) | None => {}
            }
        }
        match best {
            Some((id, hash)) => Head::Sealed {
                id,
                hash: hash.to_string(),
            },
            None if foreign => {
                Head::Invalid("its seal does not match (not written with this CA's key)".into())
            }
            None => Head::Invalid("not an audit head".into()),
        }
    }

    /// The file at the head's path, read now: the one kept open when it is still there (same device
    /// and inode), else opened (created when `create`; None when there is none and not `create`).
    /// Its slots are parsed again only when its bytes changed since they were last seen here.
    fn current<'k>(
        &self,
        kept: &'k mut Option<KeptHead>,
        create: bool,
    ) -> std::io::Result<Option<&'k mut KeptHead>> {
        let at_path = match std::fs::metadata(&self.head_path) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if at_path.is_none() || kept.as_ref().map(|k| k.id) != at_path {
            *kept = None;
            if at_path.is_none() && !create {
                return Ok(None);
            }
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .mode(0o600)
                .open(&self.head_path)
            {
                Ok(f) => f,
                // Readable only (`ca audit verify` run by another user): read, not kept.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !create => {
                    std::fs::File::open(&self.head_path)?
                }
                Err(e) => return Err(e),
            };
            let m = file.metadata()?;
            *kept = Some(KeptHead {
                file,
                id: (m.dev(), m.ino()),
                bytes: Vec::new(),
                slots: Vec::new(),
            });
        }
        let Some(file) = kept.as_ref().map(|k| &k.file) else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; 2 * SLOT];
        let mut n = 0;
        let read = loop {
            if n == bytes.len() {
                break Ok(());
            }
            match file.read_at(&mut bytes[n..], n as u64) {
                Ok(0) => break Ok(()),
                Ok(read) => n += read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = read {
            *kept = None;
            return Err(e);
        }
        let Some(k) = kept.as_mut() else {
            return Ok(None);
        };
        bytes.truncate(n);
        if bytes != k.bytes {
            k.slots = bytes.chunks(SLOT).map(|slot| self.parse_slot(slot)).collect();
            k.bytes = bytes;
        }
        Ok(Some(k))
    }

    /// One slot: None when it is not a head at all (empty, torn), Err when its seal is wrong.
    fn parse_slot(&self, slot: &[u8]) -> Option<Result<(i64, String), ()>> {
        let text = std::str::from_utf8(slot).ok()?;
        let mut words = text.split_whitespace();
        if words.next() != Some(HEAD_MAGIC) {
            return None;
        }
        let mut field = |name: &str| {
            (words.next() == Some(name))
                .then(|| words.next())
                .flatten()
                .map(str::to_string)
        };
        let id = field("id")?.parse::<i64>().ok()?;
        let hash = field("hash")?;
        let mac = field("seal")?;
        if self.verify(&format!("head\u{1f}{id}\u{1f}{hash}"), &mac) {
            Some(Ok((id, hash)))
        } else {
            Some(Err(()))
        }
    }

    /// Records the head, unless the file already names a later record (another process wrote after
    /// us). The file has two fixed-size slots; the write goes to the one not holding the newest head,
    /// in place (no rename: a rename costs a data flush per transaction on ext4), so that a torn write
    /// leaves the other slot, one head behind. Best effort: the transaction is committed already.
    pub fn write_head(&self, id: i64, hash: &str) {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = match self.current(&mut kept, true) {
            Ok(Some(k)) => k,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), path = %self.head_path.display(), "could not write the audit head");
                return;
            }
        };
        let mut ids = [None, None];
        for (i, slot) in k.slots.iter().enumerate() {
            if let Some(Ok((held, _))) = slot {
                if *held >= id {
                    return;
                }
                ids[i] = Some(*held);
            }
        }
        // The slot to overwrite: an empty or invalid one, else the older.
        let target = match ids {
            [None, _] => 0,
            [Some(_), None] => 1,
            [Some(a), Some(b)] => usize::from(a > b),
        };
        let mut line = format!(
            "{HEAD_MAGIC} id {id} hash {hash} seal {}",
            self.head_mac(id, hash)
        );
        if line.len() >= SLOT {
            tracing::warn!("the audit head does not fit its slot");
            return;
        }
        line.extend(std::iter::repeat_n(' ', SLOT - 1 - line.len()));
        line.push('\n');
        let at = target * SLOT;
        if let Err(e) = k.file.write_all_at(line.as_bytes(), at as u64) {
            tracing::warn!(error = %crate::error::Chain(&e), path = %self.head_path.display(), "could not write the audit head");
            *kept = None;
            return;
        }
        // What the file holds now (a write past its end fills the gap with zeros).
        if k.bytes.len() < at + SLOT {
            k.bytes.resize(at + SLOT, 0);
        }
        k.bytes[at..at + SLOT].copy_from_slice(line.as_bytes());
        if k.slots.len() <= target {
            k.slots.resize(target + 1, None);
        }
        k.slots[target] = Some(Ok((id, hash.to_string())));
    }
}

/// The size of one head slot (a line padded with spaces).
const SLOT: usize = 256;

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trip_and_forgery() {
        let dir = tempfile::tempdir().unwrap();
        let seal = AuditSeal::new(&[7u8; 32], dir.path());
        assert_eq!(seal.read_head(), Head::Missing);
        seal.write_head(5, "abc");
        assert_eq!(
            seal.read_head(),
            Head::Sealed {
                id: 5,
                hash: "abc".into()
            }
        );
        // Never moved back.
        seal.write_head(4, "def");
        assert!(matches!(seal.read_head(), Head::Sealed { id: 5, .. }));
        // Another key's head is not ours.
        let other = AuditSeal::new(&[8u8; 32], dir.path());
        assert!(matches!(other.read_head(), Head::Invalid(_)));
        let text = std::fs::read_to_string(seal.head_path()).unwrap();
        std::fs::write(seal.head_path(), text.replace("id 5 ", "id 6 ")).unwrap();
        assert!(matches!(seal.read_head(), Head::Invalid(_)));
        std::fs::write(seal.head_path(), "").unwrap();
        assert!(matches!(seal.read_head(), Head::Invalid(_)));
        // Two slots: the newest valid one counts, a torn one is skipped.
        std::fs::remove_file(seal.head_path()).unwrap();
        for id in [1, 2, 3] {
            seal.write_head(id, &format!("h{id}"));
        }
        assert_eq!(
            seal.read_head(),
            Head::Sealed {
                id: 3,
                hash: "h3".into()
            }
        );
        let mut bytes = std::fs::read(seal.head_path()).unwrap();
        assert_eq!(bytes.len(), 2 * SLOT);
        let newest = if bytes[..SLOT].windows(4).any(|w| w == b"id 3") {
            0
        } else {
            SLOT
        };
        bytes[newest + 40] ^= 1;
        std::fs::write(seal.head_path(), &bytes).unwrap();
        assert_eq!(
            seal.read_head(),
            Head::Sealed {
                id: 2,
                hash: "h2".into()
            }
        );
        assert!(seal.row_ok(3, "h", &seal.row_mac(3, "h")));
        assert!(!seal.row_ok(4, "h", &seal.row_mac(3, "h")));
        assert!(!seal.row_ok(3, "h", "zz"));
    }

    /// The head file is kept open between calls: a file put in its place, or its removal, is seen
    /// at the next call, and a write after a removal creates the file at the path again.
    #[test]
    fn a_head_file_replaced_or_removed_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let seal = AuditSeal::new(&[7u8; 32], dir.path());
        seal.write_head(1, "h1");
        seal.write_head(2, "h2");
        let sealed = |id: i64| Head::Sealed {
            id,
            hash: format!("h{id}"),
        };
        assert_eq!(seal.read_head(), sealed(2));
        // Another file moved into its place (an older copy, or a foreign one): read, not the kept one.
        let older = dir.path().join("older");
        let other = AuditSeal::new(&[7u8; 32], &older);
        std::fs::create_dir(&older).unwrap();
        other.write_head(1, "h1");
        std::fs::rename(other.head_path(), seal.head_path()).unwrap();
        assert_eq!(seal.read_head(), sealed(1));
        std::fs::write(dir.path().join("foreign"), "not a head").unwrap();
        std::fs::rename(dir.path().join("foreign"), seal.head_path()).unwrap();
        assert!(matches!(seal.read_head(), Head::Invalid(_)));
        // Removed: missing, and the next write creates it again where it belongs.
        std::fs::remove_file(seal.head_path()).unwrap();
        assert_eq!(seal.read_head(), Head::Missing);
        seal.write_head(3, "h3");
        let fresh = AuditSeal::new(&[7u8; 32], dir.path());
        assert_eq!(fresh.read_head(), sealed(3));
        // Written by another process (another handle) in place: seen by this one.
        fresh.write_head(4, "h4");
        assert_eq!(seal.read_head(), sealed(4));
        seal.write_head(5, "h5");
        assert_eq!(fresh.read_head(), sealed(5));
        // Its older slot rewritten in place by someone else: parsed again, not taken from memory.
        let mut bytes = std::fs::read(seal.head_path()).unwrap();
        let newest = if bytes[..SLOT].windows(4).any(|w| w == b"id 5") {
            0
        } else {
            SLOT
        };
        bytes[newest + 40] ^= 1;
        std::fs::OpenOptions::new()
            .write(true)
            .open(seal.head_path())
            .unwrap()
            .write_all_at(&bytes, 0)
            .unwrap();
        assert_eq!(seal.read_head(), sealed(4));
    }
}
