//! `ca key encrypt|decrypt`: the data directory's CA key (and root key) rewritten in place.

use std::path::PathBuf;

use super::{blocking, check_key_mode, AuthorityError, CaSettings};
use crate::ca::keys;
use crate::ca::passphrase::Passphrase;
use crate::datadir::DataDir;

/// One key file rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenKey {
    /// The file.
    pub path: PathBuf,
    /// Whether it was encrypted before.
    pub was_encrypted: bool,
}

/// Rewrites `ca_key.pem` (and `root_key.pem` when present): encrypted with `new_passphrase`, or
/// unencrypted when it is `None`. Encrypted keys are opened with the passphrase of `settings`. Every
/// key is read and checked before any is written; each is written to a new 0600 file, read back, then
/// renamed over the old one. A running server keeps the key it loaded; it needs the new passphrase
/// at its next start.
pub async fn rewrite_keys(
    dir: &DataDir,
    settings: &CaSettings,
    new_passphrase: Option<Passphrase>,
) -> Result<Vec<RewrittenKey>, AuthorityError> {
    if settings.pkcs11.is_some() {
        return Err(AuthorityError::Invalid(
            "the CA key is in a PKCS#11 token ([ca.pkcs11]): there is no key file to encrypt or decrypt"
                .into(),
        ));
    }
    let mut files = vec![(dir.ca_key(), "the CA key")];
    if dir.root_key().exists() {
        files.push((dir.root_key(), "the root CA key"));
    }
    let mut rewritten = Vec::new();
    for (path, what) in files {
        check_key_mode(&path)?;
        let old = std::fs::read_to_string(&path)
            .map_err(|e| AuthorityError::rejected(format!("cannot read {}", path.display()), e))?;
        let was_encrypted = keys::is_encrypted(&old);
        let key = settings.load_key(old, what).await?;
        let pass = new_passphrase.clone();
        let pem = blocking(move || {
            let pem = match &pass {
                Some(p) => keys::encrypt_pem(&key, p)?,
                None => keys::pkcs8_pem(&key)?.to_string(),
            };
            // Read back before the old file goes: a key that cannot be opened would lose the CA.
            let back = keys::load_key(&pem, pass.as_ref(), what)?;
            if back.public_key_raw() != key.public_key_raw() {
                return Err(crate::ca::CaError::Key(format!(
                    "{what} did not read back; nothing changed"
                )));
            }
            Ok(pem)
        })
        .await?;
        rewritten.push((path, pem, was_encrypted));
    }
    let mut out = Vec::new();
    for (path, pem, was_encrypted) in rewritten {
        crate::datadir::replace_file(&path, pem.as_bytes(), 0o600)
            .map_err(|e| AuthorityError::rejected(format!("cannot write {}", path.display()), e))?;
        out.push(RewrittenKey { path, was_encrypted });
    }
    // The renames reach the disk with the directory.
    std::fs::File::open(dir.root())
        .and_then(|d| d.sync_all())
        .map_err(|e| AuthorityError::rejected(format!("cannot sync {}", dir.root().display()), e))?;
    Ok(out)
}
