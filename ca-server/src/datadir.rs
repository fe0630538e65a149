//! The data directory: the SQLite database, the CA key (0600), and the PEM files that clients need
//! (the CA chain, the server's and the admin's identities).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the default data directory.
pub const DATA_DIR_ENV: &str = "CA_DATA_DIR";

/// The default data directory: `/var/lib/ca` for root, else `$XDG_DATA_HOME/ca` or
/// `~/.local/share/ca`.
pub fn default_data_dir() -> PathBuf {
    let is_root = fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/ca");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("ca");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/ca"),
        None => PathBuf::from("/var/lib/ca"),
    }
}

/// Paths inside a data directory, and where the CA's state lives: the SQLite database in it, or a
/// PostgreSQL database named by URL (several replicas, each with its own data directory).
#[derive(Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
    database_url: Option<String>,
    /// PostgreSQL: the limit of each statement (the store's default when none).
    statement_limit: Option<std::time::Duration>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("root", &self.root)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::storage::redact_url),
            )
            .finish()
    }
}

impl DataDir {
    /// Wraps a directory path (state in its SQLite database).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir {
            root: root.into(),
            database_url: None,
            statement_limit: None,
        }
    }
    /// The same directory, its PostgreSQL statements limited to `limit` each
    /// (`limits.database-statement-timeout`; `None`: the store's default).
    pub fn with_statement_limit(mut self, limit: Option<std::time::Duration>) -> Self {
        self.statement_limit = limit;
        self
    }
    /// The limit of each PostgreSQL statement, when one was given.
    pub fn statement_limit(&self) -> Option<std::time::Duration> {
        self.statement_limit
    }
    /// The same directory with the state in the database at `url` (`None`: its SQLite file).
    pub fn with_database_url(mut self, url: Option<String>) -> Self {
        self.database_url = url;
        self
    }
    /// The database URL, when the state is not in the directory's SQLite file.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }
    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The SQLite database.
    pub fn db(&self) -> PathBuf {
        self.root.join("ca.db")
    }
    /// The CA private key (mode 0600).
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca_key.pem")
    }
    /// The root CA's private key of an intermediate CA (mode 0600), when kept here.
    pub fn root_key(&self) -> PathBuf {
        self.root.join("root_key.pem")
    }
    /// The CA chain, signing CA first.
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca_crt.pem")
    }
    /// The server's TLS certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server/cert.pem")
    }
    /// The server's TLS key.
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server/key.pem")
    }
    /// The admin client certificate (carries `pp_cli_auth`).
    pub fn admin_cert(&self) -> PathBuf {
        self.root.join("admin/cert.pem")
    }
    /// The admin client key.
    pub fn admin_key(&self) -> PathBuf {
        self.root.join("admin/key.pem")
    }
    /// The next CA key during a key rollover (`ca rollover start`), until `switch`.
    pub fn next_ca_key(&self) -> PathBuf {
        self.root.join("rollover/next_ca_key.pem")
    }
    /// The previous CA key during a key rollover (from `switch` to `finish`).
    pub fn previous_ca_key(&self) -> PathBuf {
        self.root.join("rollover/previous_ca_key.pem")
    }
    /// Where a rollover's files are (the keys above, the new CA certificate, the cross-certificates).
    pub fn rollover_dir(&self) -> PathBuf {
        self.root.join("rollover")
    }
    /// This server's delegated OCSP responder certificate (issued by the server itself).
    pub fn ocsp_cert(&self) -> PathBuf {
        self.root.join("ocsp/cert.pem")
    }
    /// Its key (EC P-256, mode 0600).
    pub fn ocsp_key(&self) -> PathBuf {
        self.root.join("ocsp/key.pem")
    }
    /// Whether a CA already lives here (database or key present).
    pub fn has_ca(&self) -> bool {
        self.db().exists() || self.ca_key().exists()
    }
}

/// Refuses a private key file that other users may read or write (any group or other permission bit),
/// saying how to fix it; `what` names it (`the CA key`, `the server key`).
pub fn check_private_key_mode(path: &Path, what: &str) -> Result<(), crate::ca::CaError> {
    use crate::ca::CaError;
    let mode = fs::metadata(path)
        .map_err(|e| CaError::failed(format!("key error: cannot read {what} {}", path.display()), e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CaError::Key(format!(
            "{what} {} is accessible to other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

/// Writes a new file with `mode`, refusing to overwrite, creating parent directories (0700).
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    // The umask may have narrowed the mode; set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Replaces `path` with `contents` (mode `mode`): written beside it, then renamed over it, so that a
/// reader sees the old file or the new one, never half of one.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pem.new");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_new(&tmp, contents, mode)?;
    fs::rename(&tmp, path)
}

/// Creates a directory (and parents) with mode 0700 when it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
