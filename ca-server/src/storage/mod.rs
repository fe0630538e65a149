//! Persistence: the only module that speaks SQL. Two backends behind one API and one statement text
//! (sqlx's `Any` driver, `$N` placeholders, which SQLite reads as numbered parameters too):
//!
//! - SQLite (the default, zero set-up): one database file in WAL mode; every change is one
//!   `BEGIN IMMEDIATE` transaction, so the CLI and a running server can write the same file safely.
//! - PostgreSQL (several active `ca-server` replicas): every change is one transaction that first
//!   takes the CA's global write lock, a transaction-scoped advisory lock, which dies with the
//!   connection of a crashed writer.
//!
//! The batched writers' transactions (CSR submission groups, signing rounds) run on SQLite on a
//! connection driven directly from their thread instead (see [`direct`], [`Store::write_batch`]),
//! with the same statement text and the same lock.
//!
//! Either way, writers are serialized by one explicit lock: the invariants that need a single writer
//! (serial allocation, CRL numbering and its append base, the audit chain head, the duplicate-request
//! check) hold with several processes and replicas.

pub mod crl_mark;
mod direct;
mod failover;
mod migrations;
pub mod pg_hosts;
mod pg_kept;
mod queries;
mod seal;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;
use sqlx::{Any, Executor, Transaction};

use pg_kept::within;

/// A read on a connection of the store's pool, `|c| body` with `c: &mut AnyConnection`, within the
/// statement limit on PostgreSQL (see [`pg_kept::within`]). A read that does not end well (past the
/// limit, failed, or abandoned by its caller) closes its connection instead of giving it back to
/// the pool: sqlx would first ping it, with no limit, and a server that vanished without closing its
/// connections would keep that place for the kernel's retransmission timeout.
macro_rules! read {
    ($store:expr, |$c:ident| $body:expr) => {{
        let store: &Store = $store;
        let mut held = ReadConn::acquire(&store.pool).await?;
        let res = {
            let $c: &mut sqlx::AnyConnection = &mut *held.conn;
            within(store.read_limit(), $body).await
        };
        held.done = res.is_ok();
        res
    }};
}

/// A pooled connection a read runs on: closed when dropped before the read ended well (see
/// [`read`]).
struct ReadConn {
    conn: sqlx::pool::PoolConnection<Any>,
    done: bool,
}

impl ReadConn {
    async fn acquire(pool: &AnyPool) -> Result<ReadConn, StoreError> {
        Ok(ReadConn {
            conn: pool.acquire().await?,
            done: false,
        })
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

pub use queries::{
    audit_hash, AuditRecord, AuditRow, CertRow, CrlLayout, CrlRow, CrlUpdate, ExpiringRow, MetricsSnapshot,
    NewCertificate, NewRequest, RequestRow, RevocationRow, StatusFilter, TwinPieces,
};
pub use seal::{AuditSeal, Head, HEAD_FILE};

/// What `verify_audit` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every record chains, every sealed one is sealed with this CA's key, the head is in place.
    Intact {
        /// Records checked.
        records: u64,
        /// Records from before sealing existed (a prefix, covered by the first sealed one's hash).
        unsealed: u64,
        /// The newest record's id and hash (worth keeping elsewhere: see the README).
        head: Option<(i64, String)>,
        /// Whether the head file was there to check against (it is missing after a restore from a
        /// backup, until the next change writes it).
        head_file: bool,
    },
    /// The first problem found.
    Tampered {
        /// The first record that is wrong or missing, when one can be named.
        record: Option<i64>,
        /// What is wrong.
        why: String,
    },
}

/// Storage errors. Constraint violations become domain errors by name.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file does not exist (no CA set up here).
    #[error("no CA database at {0} (run `ca setup` first)")]
    Missing(String),
    /// A row that must be unique already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// The database holds something we cannot read back.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// Migration failure.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Not possible on this backend.
    #[error("{0}")]
    Unsupported(String),
    /// Any other database error.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// A database error on a direct SQLite connection (see [`direct`]).
    #[error("database error")]
    Direct(#[from] rusqlite::Error),
    /// A file the store writes (a backup) cannot be written where asked.
    #[error("{0}")]
    File(String),
    /// A file the store writes (a backup) cannot be created.
    #[error("cannot create {path}")]
    Create {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The advisory lock key of the CA's global write lock on PostgreSQL ("ca-write" in ASCII).
const WRITE_LOCK_KEY: i64 = 0x63_61_2d_77_72_69_74_65;

/// A PostgreSQL write transaction's start, in one round trip (one simple query): the transaction
/// and the CA's write lock ([`WRITE_LOCK_KEY`]), held until it ends.
static PG_BEGIN_WRITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"));

/// The same, for a transaction whose commit need not wait for the disk.
static PG_BEGIN_WRITE_UNSYNCED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{}; SET LOCAL synchronous_commit = off", *PG_BEGIN_WRITE));

/// The PostgreSQL notification channel of CRL changes.
const CRL_CHANNEL: &str = "ca_crl";

/// Waits for the moments the CRLs may have changed in a shared database: a notification from the
/// writer's transaction (PostgreSQL `LISTEN`), or at the latest every `poll` (the fallback when
/// notifications are lost with a connection). A store on SQLite has none: there the readers check
/// the database themselves.
pub struct ChangeFeed {
    /// The server list and the one the store uses: the feed listens on that one (notifications are
    /// sent on the primary and LISTEN is refused on a standby).
    failover: Arc<failover::Failover>,
    /// The listening connection and the store's switch count when it was opened.
    listener: Option<(sqlx::postgres::PgListener, u64)>,
    poll: Duration,
}

impl ChangeFeed {
    /// Returns when a notification arrived or `poll` passed; an error when the database cannot be
    /// reached (the next call tries to connect again).
    pub async fn wait(&mut self) -> Result<(), StoreError> {
        if self
            .listener
            .as_ref()
            .is_some_and(|(_, g)| *g != self.failover.generation())
        {
            // The store moved to another server (failover): listen there.
            self.listener = None;
        }
        let Some((l, _)) = self.listener.as_mut() else {
            self.listener = Some(self.connect().await?);
            // Connected anew: whatever happened meanwhile is read now.
            return Ok(());
        };
        match tokio::time::timeout(self.poll, l.try_recv()).await {
            Err(_) | Ok(Ok(Some(_))) => Ok(()),
            Ok(Ok(None)) | Ok(Err(_)) => {
                // The connection was lost: notifications in between are gone, so the caller reads
                // the state once the feed is back. The server may have failed: look for the primary.
                self.failover.suspect();
                self.listener = None;
                self.listener = Some(self.connect().await?);
                Ok(())
            }
        }
    }

    /// A listening connection on the store's current server, or an error within `poll` (sqlx would
    /// retry for its whole acquire timeout; readiness must change sooner).
    async fn connect(&self) -> Result<(sqlx::postgres::PgListener, u64), StoreError> {
        let Some((url, generation)) = self.failover.current_url() else {
            return Err(StoreError::Unsupported("the database URL names no server".into()));
        };
        let connect = async {
            let mut l = sqlx::postgres::PgListener::connect(&url).await?;
            l.listen(CRL_CHANNEL).await?;
            Ok::<_, StoreError>(l)
        };
        let res = match tokio::time::timeout(self.poll.max(Duration::from_secs(1)), connect).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unsupported(
                "the database does not answer (timed out connecting)".into(),
            )),
        };
        match res {
            Ok(l) => Ok((l, generation)),
            Err(e) => {
                self.failover.suspect();
                Err(e)
            }
        }
    }
}

/// Which database engine holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A handle on the CA database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// PostgreSQL: the write transactions' pool.
    writer: Option<AnyPool>,
    /// PostgreSQL: the write transactions' and reservations' connections, kept out of the write
    /// pool, and the statement limit (see [`pg_kept`]).
    kept: Option<Arc<pg_kept::Kept>>,
    /// SQLite: the one connection the batched writers' durable transactions use, driven directly
    /// (see [`direct`]). Always the same connection, so its page cache stays valid from one
    /// transaction to the next (a connection whose cache another connection's commit made stale
    /// reads its pages again).
    direct: Option<Arc<direct::Direct>>,
    /// SQLite: one direct connection with `synchronous = NORMAL`, for
    /// [`Store::write_batch_unsynced`].
    direct_unsynced: Option<Arc<direct::Direct>>,
    backend: Backend,
    /// PostgreSQL: the server list and which one the pool uses (followed on failover).
    failover: Option<Arc<failover::Failover>>,
    /// Seals audit rows and keeps the head file (when the CA key is loaded).
    seal: Option<Arc<AuditSeal>>,
    /// SQLite: this process's writers queue here, first come first served, before `BEGIN
    /// IMMEDIATE`, instead of sleeping in SQLite's busy handler (its retries wait up to 100 ms and
    /// more).
    writers: Arc<tokio::sync::Mutex<()>>,
    /// SQLite: `<database>-lock`, locked (`flock`) by the writer holding `writers`, so that writers of
    /// other processes (the server and `ca` in local mode) queue in the kernel, woken the moment the
    /// lock is free, and never meet SQLite's lock and its busy-handler sleeps.
    lock_file: Option<Arc<std::fs::File>>,
    /// SQLite: commits since the start, read by the background checkpointer (see
    /// [`start_checkpointer`]); alive while any handle on this store is.
    commits: Option<Arc<AtomicU64>>,
    /// SQLite: `<database>-crl`, grown after each commit that changes the CRLs (see [`crl_mark`]).
    crl_mark: Option<Arc<crl_mark::CrlMark>>,
}

/// The writer lock file of the SQLite database at `db` (`<db>-lock`, beside SQLite's `-wal` and
/// `-shm`), created 0600 when missing. `None` when it cannot be opened (a read-only directory): the
/// writers then meet SQLite's lock alone.
fn open_lock_file(db: &Path) -> Option<Arc<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = db.as_os_str().to_owned();
    name.push("-lock");
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&name)
    {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::debug!(path = ?name, error = %crate::error::Chain(&e), "writer lock file");
            None
        }
    }
}

/// SQLite: how often the background checkpointer looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// SQLite: copies committed pages from the WAL back into the database file in the background
/// (`PRAGMA wal_checkpoint(PASSIVE)`, which waits for no reader or writer), instead of in the commit
/// that crosses SQLite's 1,000-page threshold: that commit would wait for the copy and a `fsync` of
/// the database file, which put a 10-20 ms step into the 99th percentile of CSR submissions and
/// took 10 % off bulk signing. The connections run with `wal_autocheckpoint = 0`. Ends when every
/// handle on the store is dropped or the pool is closed. Returns the commit counter it watches.
fn start_checkpointer(pool: AnyPool) -> Arc<AtomicU64> {
    let commits = Arc::new(AtomicU64::new(0));
    let watched = Arc::downgrade(&commits);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut done = 0;
        loop {
            tick.tick().await;
            let Some(now) = watched.upgrade().map(|c| c.load(Ordering::Relaxed)) else {
                return;
            };
            if now == done {
                continue;
            }
            if pool.is_closed() {
                return;
            }
            match wal_checkpoint(&pool).await {
                Ok(()) => done = now,
                Err(e) => tracing::debug!(error = %crate::error::Chain(&e), "WAL checkpoint"),
            }
        }
    });
    commits
}

/// SQLite: copies what it can of the WAL into the database file, waiting for no reader or writer.
async fn wal_checkpoint(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(pool)
        .await?;
    Ok(())
}

/// How long a writer waits in the queue before it asks SQLite directly (a transaction opened while
/// this task holds another would otherwise wait for itself).
const WRITER_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a writer waits for another process's write transaction (SQLite's `busy_timeout` after).
const WRITER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The cross-process writer lock (see `Store::lock_file`), held until dropped.
#[derive(Debug)]
struct FileLock(Arc<std::fs::File>);

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Takes the writer lock on `file`: at once when free, else in a blocking thread that the kernel
/// wakes when the other process lets go, for at most `WRITER_LOCK_WAIT`. `None` when it cannot be
/// had (the transaction then meets SQLite's own lock, as without this one).
async fn lock_writer_file(file: &Arc<std::fs::File>) -> Option<FileLock> {
    match file.try_lock() {
        Ok(()) => return Some(FileLock(Arc::clone(file))),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::debug!(error = %crate::error::Chain(&e), "writer lock file");
            return None;
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let f = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        if f.lock().is_ok() {
            // Nobody waits any more: let go at once.
            if let Err(lock) = tx.send(FileLock(f)) {
                drop(lock);
            }
        }
    });
    tokio::time::timeout(WRITER_LOCK_WAIT, rx).await.ok()?.ok()
}

/// A database URL with any password replaced, for messages and logs (host lists included).
pub fn redact_url(url: &str) -> String {
    if is_postgres_url(url) {
        return pg_hosts::redact(url);
    }
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable database URL)".to_string(),
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Store {
    /// Opens (creating if asked) the database and brings its schema up to date.
    ///
    /// Durability: WAL with `synchronous = FULL`, so an issuance or revocation acknowledged to a client
    /// has reached the disk before the answer leaves.
    pub async fn open(path: &Path, create: bool) -> Result<Store, StoreError> {
        if !create && !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        sqlx::any::install_default_drivers();
        // The path travels in a URL: percent-encode all but the plain characters.
        let encoded: String = path
            .display()
            .to_string()
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let mode = if create { "rwc" } else { "rw" };
        let opts = AnyConnectOptions::from_str(&format!("sqlite://{encoded}?mode={mode}"))?;
        // No ping before each use: a local file's connection does not drop, and the ping cost a
        // round trip to the connection's thread for every statement run on the pool.
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; \
                         PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                         PRAGMA wal_autocheckpoint = 0",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(opts.clone())
            .await?;
        migrations::sqlite().await?.run(&pool).await?;
        // Opened when first used, kept for good (no idle or age limit): reopened only after an error
        // or by `reopen_write_connections`.
        let direct = direct::Direct::new(
            path.to_path_buf(),
            "PRAGMA busy_timeout = 30000; PRAGMA synchronous = FULL; \
             PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0",
        );
        let direct_unsynced = direct::Direct::new(
            path.to_path_buf(),
            "PRAGMA busy_timeout = 30000; PRAGMA synchronous = NORMAL; \
             PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0",
        );
        let commits = Some(start_checkpointer(pool.clone()));
        let lock_file = open_lock_file(path);
        Ok(Store {
            pool,
            writer: None,
            kept: None,
            direct: Some(direct),
            direct_unsynced: Some(direct_unsynced),
            backend: Backend::Sqlite,
            failover: None,
            seal: None,
            writers: Arc::default(),
            lock_file,
            commits,
            crl_mark: Some(Arc::new(crl_mark::CrlMark::of(path))),
        })
    }

    /// Opens a PostgreSQL database (`postgresql://...`, multi-host URLs with
    /// `target_session_attrs=read-write` included: the first server that qualifies is used, and the
    /// store follows a failover to another by itself) and brings its schema up to date.
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        if !is_postgres_url(url) {
            return Err(StoreError::Corrupt(format!(
                "unsupported database URL {} (use postgresql://..., or a data directory for SQLite)",
                redact_url(url)
            )));
        }
        sqlx::any::install_default_drivers();
        let (pool, writer, failover) = failover::Failover::open(url).await?;
        let migrator = migrations::postgres().await?;
        // Replicas starting together: the migration runs under the write lock (on the chosen server).
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(WRITE_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        let migrated = migrator.run(&mut *conn).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(WRITE_LOCK_KEY)
            .execute(&mut *conn)
            .await;
        migrated?;
        drop(conn);
        let kept = pg_kept::Kept::new(writer.clone(), Arc::clone(&failover));
        Ok(Store {
            pool,
            writer: Some(writer),
            kept: Some(kept),
            direct: None,
            direct_unsynced: None,
            backend: Backend::Postgres,
            failover: Some(failover),
            seal: None,
            writers: Arc::default(),
            lock_file: None,
            crl_mark: None,
            commits: None,
        })
    }

    /// Opens the store of a data directory: the database at its URL, else its SQLite file (created
    /// when `create`).
    pub async fn open_for(dir: &crate::datadir::DataDir, create: bool) -> Result<Store, StoreError> {
        match dir.database_url() {
            Some(url) => {
                let store = Store::open_url(url).await?;
                if let Some(limit) = dir.statement_limit() {
                    store.set_statement_limit(limit);
                }
                Ok(store)
            }
            None => Store::open(&dir.db(), create).await,
        }
    }

    /// Whether the data directory's database holds a CA (for SQLite: whether its file exists).
    pub async fn holds_ca(dir: &crate::datadir::DataDir) -> Result<bool, StoreError> {
        match dir.database_url() {
            Some(url) => {
                let store = Store::open_url(url).await?;
                let held = store.ca().await?.is_some();
                store.close().await;
                Ok(held)
            }
            None => Ok(dir.db().exists()),
        }
    }

    /// SQLite: `<database>-crl` as it is now (see [`crl_mark`]); `None` on PostgreSQL or when it
    /// cannot be told.
    pub fn crl_mark_seen(&self) -> Option<crl_mark::CrlMarkSeen> {
        self.crl_mark.as_ref().and_then(|m| m.seen())
    }

    /// The change feed of a shared (PostgreSQL) database; None on SQLite.
    pub fn change_feed(&self, poll: Duration) -> Option<ChangeFeed> {
        self.failover.as_ref().map(|f| ChangeFeed {
            failover: Arc::clone(f),
            listener: None,
            poll,
        })
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction holding the CA's global write lock until it ends: on SQLite
    /// `BEGIN IMMEDIATE` (the database's write lock, taken now, never mid-way); on PostgreSQL a
    /// transaction-scoped advisory lock (released at commit, rollback, or when the connection dies).
    /// On PostgreSQL each statement of the transaction may take at most a limit (60 s unless
    /// [`Store::set_statement_limit`] says otherwise), on a connection kept out of the write pool:
    /// see [`pg_kept`].
    pub async fn write(&self) -> Result<WriteTx, StoreError> {
        self.write_on(None, self.kept.as_ref(), &PG_BEGIN_WRITE).await
    }

    /// A write transaction for the batched writers (CSR submission groups, signing rounds): like
    /// [`Store::write`], but on SQLite on a connection driven from the calling thread (see
    /// [`direct`]), whose statements block that thread (the writers' thread is there for them), and
    /// on PostgreSQL on a connection kept out of the write pool (see [`pg_kept`]).
    /// On SQLite such a transaction runs only what those writers need: [`WriteTx::requests_named`],
    /// [`WriteTx::requests_named_before_audit`], [`WriteTx::name_states_before_audit`],
    /// [`WriteTx::current_certificate`], [`WriteTx::store_round_and_commit`],
    /// [`WriteTx::store_requests_and_commit`] and [`WriteTx::commit`]; anything else answers
    /// [`StoreError::Unsupported`].
    pub async fn write_batch(&self) -> Result<WriteTx, StoreError> {
        self.write_on(self.direct.as_ref(), self.kept.as_ref(), &PG_BEGIN_WRITE)
            .await
    }

    /// A write transaction on `direct` (SQLite) when given and free, on a connection of `kept`
    /// (PostgreSQL) when given, else on a pooled connection, begun with `pg_begin` on PostgreSQL.
    async fn write_on(
        &self,
        direct: Option<&Arc<direct::Direct>>,
        kept: Option<&Arc<pg_kept::Kept>>,
        pg_begin: &'static str,
    ) -> Result<WriteTx, StoreError> {
        if let Some(kept) = kept {
            let limit = kept.limit();
            let mut conn = kept.take().await?;
            let begun = within(limit.clone(), conn.conn()?.execute(pg_begin))
                .await
                .map_err(StoreError::from);
            noted(self.failover.as_ref(), begun)?;
            return Ok(self.write_tx(Queued::default(), Tx::Kept(conn), limit));
        }
        let queued = self.queue().await;
        // Only in this process's turn: a writer past the queue's wait may meet another's write
        // lock, and must wait for it without blocking its thread (see `direct`).
        if let (Some(direct), true) = (direct, queued.in_turn()) {
            if let Some(tx) = direct.begin()? {
                return Ok(self.write_tx(queued, Tx::Direct(tx), pg_kept::Limit::default()));
            }
        }
        let tx = self.begin_write_with(pg_begin).await?;
        Ok(self.write_tx(queued, Tx::Pooled(tx), pg_kept::Limit::default()))
    }

    fn write_tx(&self, queued: Queued, tx: Tx, limit: pg_kept::Limit) -> WriteTx {
        WriteTx {
            _queued: queued,
            tx,
            seal: self.seal.clone(),
            head: None,
            advance_head: None,
            backend: self.backend,
            failover: self.failover.clone(),
            commits: self.commits.clone(),
            audit_ids: std::collections::VecDeque::new(),
            crl_mark: self.crl_mark.clone(),
            crl_changed: false,
            limit,
        }
    }

    /// A batched writer's transaction (see [`Store::write_batch`]), under the same global write
    /// lock, whose commit does not wait for the disk: for changes that may be lost in a crash
    /// without losing anything handed out, and that a later durable commit makes durable with it
    /// (SQLite's WAL and PostgreSQL's log are written in order). The signing pipeline reserves
    /// serials in it: a certificate is answered only after the durable commit that stores it.
    pub async fn write_batch_unsynced(&self) -> Result<WriteTx, StoreError> {
        self.write_on(
            self.direct_unsynced.as_ref(),
            self.kept.as_ref(),
            &PG_BEGIN_WRITE_UNSYNCED,
        )
        .await
    }

    /// How long a read may take: the statement limit on PostgreSQL, none on SQLite.
    fn read_limit(&self) -> pg_kept::Limit {
        self.kept.as_ref().map(|k| k.limit()).unwrap_or_default()
    }

    /// PostgreSQL: the server in use did not answer in time; one re-probe in the background looks
    /// for the server that qualifies now (see [`failover`]). Nothing on SQLite.
    pub fn suspect_failover(&self) {
        if let Some(f) = &self.failover {
            f.suspect();
        }
    }

    /// PostgreSQL: how long each statement (of a write transaction, a reservation or a read) may take
    /// from now on (60 s by default; see [`pg_kept`]). Nothing on SQLite.
    pub fn set_statement_limit(&self, limit: Duration) {
        if let Some(kept) = &self.kept {
            kept.set_limit(limit);
        }
    }

    /// Closes the write connections and opens one again from the calling thread (in this process's
    /// turn to write), which its writes then run with. SQLite: the direct connections are closed,
    /// and opened again by the next batched writer (they run on the thread that uses them).
    /// PostgreSQL: a connection's socket is watched by the runtime of the thread that opens it:
    /// the writers' runtime is woken by PostgreSQL's answers itself.
    pub async fn reopen_write_connections(&self) -> Result<(), StoreError> {
        let _turn = self.queue().await;
        for direct in [&self.direct, &self.direct_unsynced].into_iter().flatten() {
            direct.close();
        }
        if let Some(kept) = &self.kept {
            kept.close_idle().await;
        }
        for pool in [&self.writer].into_iter().flatten() {
            // Each connection the pool has, waited for: one the last transaction released may still
            // be on its way back (sqlx pings it first), and is not idle yet.
            let mut held = Vec::new();
            for _ in 0..pool.size() {
                held.push(pool.acquire().await?);
            }
            for conn in held {
                conn.close().await?;
            }
            drop(pool.acquire().await?);
        }
        Ok(())
    }

    /// SQLite: this process's turn to write (see `writers`), then the writer lock shared with other
    /// processes (see `lock_file`); nothing on PostgreSQL (its advisory lock queues writers in the
    /// server), nor after `WRITER_QUEUE_WAIT` in this process's queue.
    async fn queue(&self) -> Queued {
        if self.backend != Backend::Sqlite {
            return Queued::default();
        }
        let Ok(turn) = tokio::time::timeout(WRITER_QUEUE_WAIT, Arc::clone(&self.writers).lock_owned()).await
        else {
            return Queued::default();
        };
        let file = match &self.lock_file {
            Some(f) => lock_writer_file(f).await,
            None => None,
        };
        Queued {
            _file: file,
            _turn: Some(turn),
        }
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        self.begin_write_with(&PG_BEGIN_WRITE).await
    }

    /// A write transaction: on SQLite `BEGIN IMMEDIATE`, on PostgreSQL `pg_begin` (the transaction
    /// and the write lock, see [`PG_BEGIN_WRITE`]).
    async fn begin_write_with(
        &self,
        pg_begin: &'static str,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let res = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                self.writer
                    .as_ref()
                    .unwrap_or(&self.pool)
                    .begin_with(pg_begin)
                    .await
            }
        }
        .map_err(StoreError::from);
        noted(self.failover.as_ref(), res)
    }

    /// From now on audit rows are sealed with `seal` and its head file kept up to date.
    pub fn with_seal(mut self, seal: AuditSeal) -> Store {
        self.seal = Some(Arc::new(seal));
        self
    }

    /// A log written before sealing existed gets its newest record sealed (its hash covers all the
    /// older ones) and the head file: once, at the first start after the upgrade. A log holding any
    /// sealed record is left alone: an unsealed record after sealed ones is for `verify_audit` to report.
    pub async fn seal_legacy_log(&self) -> Result<(), StoreError> {
        let Some(seal) = self.seal.clone() else {
            return Ok(());
        };
        {
            let mut c = self.pool.acquire().await?;
            if !matches!(queries::audit_last(&mut c).await?, Some((_, _, None))) {
                return Ok(());
            }
        }
        let mut tx = self.begin_write().await?;
        let Some((id, hash, None)) = queries::audit_last(&mut tx).await? else {
            return Ok(());
        };
        if queries::audit_any_sealed(&mut tx).await? {
            return Ok(());
        }
        queries::set_audit_mac(&mut tx, id, &seal.row_mac(id, &hash)).await?;
        tx.commit().await?;
        if seal.read_head() == Head::Missing {
            seal.write_head(id, &hash);
        }
        Ok(())
    }

    /// SQLite: copies what the WAL holds into the database file now (`PRAGMA
    /// wal_checkpoint(PASSIVE)`), as the background checkpointer would later; for bulk loads, so that
    /// the work does not fall on whoever commits next. Nothing on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            wal_checkpoint(&self.pool).await?;
        }
        Ok(())
    }

    /// Closes the pool (flushes WAL on last connection).
    pub async fn close(&self) {
        for d in [&self.direct, &self.direct_unsynced].into_iter().flatten() {
            d.close();
        }
        if let Some(kept) = &self.kept {
            kept.close_idle().await;
        }
        if let Some(p) = &self.writer {
            p.close().await;
        }
        self.pool.close().await;
    }

    /// The CA chain PEM and its key id, if a CA is set up.
    pub async fn ca(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        read!(self, |c| queries::ca(c))
    }
    /// The audit log's sealing key wrapped for the current CA key, once a key rollover switched
    /// ([`crate::ca::CaSigner::adopt_audit_key`]).
    pub async fn audit_key_wrap(&self) -> Result<Option<Vec<u8>>, StoreError> {
        read!(self, |c| queries::audit_key_wrap(c))
    }
    /// The chains of a key rollover in progress: the next CA's and the previous CA's.
    pub async fn rollover_chains(&self) -> Result<(Option<String>, Option<String>), StoreError> {
        read!(self, |c| queries::rollover_chains(c))
    }
    /// When the CA chain was stored (Unix seconds).
    pub async fn ca_stored_at(&self) -> Result<Option<i64>, StoreError> {
        read!(self, |c| queries::ca_stored_at(c))
    }
    /// The DER of a certname's current certificate and when it was issued (Unix seconds).
    pub async fn current_certificate_issued(
        &self,
        certname: &str,
    ) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        read!(self, |c| queries::current_certificate_issued(c, certname))
    }
    /// A pending request.
    pub async fn request(&self, certname: &str) -> Result<Option<RequestRow>, StoreError> {
        read!(self, |c| queries::request(c, certname))
    }
    /// The current (highest, not cleaned) certificate of a certname.
    pub async fn current_certificate(&self, certname: &str) -> Result<Option<CertRow>, StoreError> {
        read!(self, |c| queries::current_certificate(c, certname))
    }
    /// All pending requests, by name.
    pub async fn requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        read!(self, |c| queries::requests(c))
    }
    /// Current certificates, by name, filtered by state.
    pub async fn certificates(&self, filter: StatusFilter) -> Result<Vec<CertRow>, StoreError> {
        read!(self, |c| queries::certificates(c, filter))
    }
    /// The status listing (`certificate_statuses`): the pending requests' status objects (when
    /// `requests`), then the current certificates' (those `certificates` selects), each in certname
    /// order, from one read snapshot, sent to `sink` a page at a time (a thousand objects at most,
    /// joined with commas, never empty), so that a listing of any size takes little memory anywhere.
    /// It ends early, without an error, when `sink` is closed. Revoked certificates' objects get
    /// `revoked_state` in place of `signed_state`. Returns the bytes of the pages sent.
    pub async fn stream_status_list(
        &self,
        requests: bool,
        certificates: Option<StatusFilter>,
        signed_state: &str,
        revoked_state: &str,
        sink: &tokio::sync::mpsc::Sender<Result<String, StoreError>>,
    ) -> Result<usize, StoreError> {
        const PAGE: i64 = 1000;
        let mut bytes = 0;
        // Each page's read is bounded like any other read (see `read!`); a listing abandoned or
        // stopped by the limit closes its connection.
        let limit = self.read_limit();
        let mut held = ReadConn::acquire(&self.pool).await?;
        let mut tx = within(limit.clone(), snapshot_on(&mut held.conn, self.backend)).await?;
        let kinds = requests
            .then_some(queries::Listed::Requests)
            .into_iter()
            .chain(certificates.map(queries::Listed::Certificates));
        for kind in kinds {
            let mut after = String::new();
            loop {
                let read = queries::status_list_page(
                    &mut tx,
                    self.backend,
                    kind,
                    &after,
                    PAGE,
                    signed_state,
                    revoked_state,
                );
                let Some((page, last)) = within(limit.clone(), read).await? else {
                    break;
                };
                bytes += page.len();
                if sink.send(Ok(page)).await.is_err() {
                    within(limit.clone(), tx.rollback()).await?;
                    held.done = true;
                    return Ok(bytes);
                }
                after = last;
            }
        }
        within(limit, tx.rollback()).await?;
        held.done = true;
        Ok(bytes)
    }

    /// The longest certname the status listing of `requests` and `certificates` holds (0 when none).
    pub async fn longest_listed_name(
        &self,
        requests: bool,
        certificates: Option<StatusFilter>,
    ) -> Result<usize, StoreError> {
        let mut longest = 0;
        if requests {
            longest = read!(self, |c| queries::longest_listed_name(
                c,
                queries::Listed::Requests
            ))?;
        }
        if let Some(f) = certificates {
            longest = longest.max(read!(self, |c| queries::longest_listed_name(
                c,
                queries::Listed::Certificates(f)
            ))?);
        }
        Ok(longest)
    }

    /// The whole status listing as one JSON array (see [`Store::stream_status_list`]).
    pub async fn status_list_json(
        &self,
        requests: bool,
        certificates: Option<StatusFilter>,
        signed_state: &str,
        revoked_state: &str,
    ) -> Result<String, StoreError> {
        let (sink, mut pages) = tokio::sync::mpsc::channel(4);
        let producing = async {
            let r = self
                .stream_status_list(requests, certificates, signed_state, revoked_state, &sink)
                .await;
            drop(sink);
            r
        };
        let collecting = async {
            let mut out = String::from("[");
            while let Some(p) = pages.recv().await {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(&p?);
            }
            out.push(']');
            Ok::<_, StoreError>(out)
        };
        let (produced, collected) = tokio::join!(producing, collecting);
        produced?;
        collected
    }

    /// The current CRL (rebuilt from its pieces, in one read snapshot).
    pub async fn crl(&self) -> Result<Option<CrlRow>, StoreError> {
        let backend = self.backend;
        read!(self, |c| async move {
            let mut tx = snapshot_on(c, backend).await?;
            let crl = whole_crl(&mut tx).await?;
            tx.rollback().await?;
            Ok(crl)
        })
    }

    /// What changed in the CRL since the one numbered `held` (its entries `held_entries` bytes
    /// long): the entries appended since, when the stored CRL continues it; else the whole CRL.
    /// A replica following another's revocations reads a few hundred bytes, not megabytes.
    pub async fn crl_since(&self, held: Option<u64>) -> Result<CrlUpdate, StoreError> {
        let backend = self.backend;
        read!(self, |c| async move {
            let mut tx = snapshot_on(c, backend).await?;
            let update = crl_since(&mut tx, held).await?;
            tx.rollback().await?;
            Ok(update)
        })
    }

    /// Imported inventory lines, by serial.
    pub async fn inventory_lines(&self) -> Result<Vec<(u64, String)>, StoreError> {
        read!(self, |c| queries::inventory_lines(c))
    }
    /// The parents' CRLs, direct parent first.
    pub async fn parent_crls(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        read!(self, |c| queries::parent_crls(c))
    }
    /// The infrastructure nodes' certnames.
    pub async fn infra_nodes(&self) -> Result<Vec<String>, StoreError> {
        read!(self, |c| queries::infra_nodes(c))
    }
    /// The serials of the infrastructure nodes' current certificates.
    pub async fn infra_serials(&self) -> Result<Vec<u64>, StoreError> {
        read!(self, |c| queries::infra_serials(c))
    }
    /// The infrastructure CRL, once one was signed.
    pub async fn infra_crl(&self) -> Result<Option<CrlRow>, StoreError> {
        read!(self, |c| queries::infra_crl(c))
    }
    /// The `Last-Modified` of the last change of the parents' CRLs (0 when none).
    pub async fn parent_crls_last_modified(&self) -> Result<i64, StoreError> {
        read!(self, |c| queries::parent_crls_last_modified(c))
    }
    /// Every certificate ever issued, by serial, with whether it was cleaned (export).
    pub async fn all_certificates(&self) -> Result<Vec<(CertRow, bool)>, StoreError> {
        read!(self, |c| queries::all_certificates(c))
    }
    /// What changes when any served CRL changes: (our CRL number, parent CRL updates). One cheap read.
    /// Our number is the last one signed, which a server may hold in memory a moment before storing it.
    pub async fn crl_version(&self) -> Result<(Option<i64>, i64), StoreError> {
        read!(self, |c| queries::crl_version(c))
    }
    /// The number of the last CRL signed.
    pub async fn crl_number(&self) -> Result<Option<u64>, StoreError> {
        read!(self, |c| queries::crl_number(c))
    }
    /// Counts for `/metrics`; `window`: the expiry warning window (seconds); certificates named
    /// `except` (renewed by the server itself) are not counted as expiring or expired.
    pub async fn metrics(&self, now: i64, window: i64, except: &str) -> Result<MetricsSnapshot, StoreError> {
        read!(self, |c| queries::metrics(c, now, window, except))
    }
    /// Whether this CA issued `serial` (a certificate or an imported inventory line) and its
    /// revocation (time, reason code), if any.
    pub async fn serial_status(&self, serial: u64) -> Result<(bool, Option<(i64, i64)>), StoreError> {
        read!(self, |c| queries::serial_status(c, serial))
    }
    /// Current, unrevoked certificates expiring at or before `until`, soonest first, except those
    /// named `except`.
    pub async fn expiring(&self, until: i64, except: &str) -> Result<Vec<ExpiringRow>, StoreError> {
        read!(self, |c| queries::expiring(c, until, except))
    }
    /// Checks the audit log: the hash chain, every record's seal, and that the head file names a
    /// record still held with the same hash. Pages through the log (constant memory).
    pub async fn verify_audit(&self) -> Result<AuditVerdict, StoreError> {
        let Some(seal) = self.seal.as_deref() else {
            return Err(StoreError::Corrupt(
                "the audit log is verified with the CA key, which is not loaded".into(),
            ));
        };
        let tampered = |record: i64, why: &str| AuditVerdict::Tampered {
            record: Some(record),
            why: format!("record {record} {why}"),
        };
        let head = seal.read_head();
        let (mut prev, mut after, mut records, mut unsealed) = (String::new(), 0i64, 0u64, 0u64);
        let mut sealed_seen = false;
        let mut head_seen = false;
        loop {
            let page = queries::audit_page(&self.pool, after, 4096).await?;
            if page.is_empty() {
                break;
            }
            for (r, mac) in &page {
                // A serial is written from a u64: a negative one was not.
                let Ok(serial) = r.serial.map(u64::try_from).transpose() else {
                    return Ok(tampered(r.id, "holds a negative serial"));
                };
                let fields = AuditRecord {
                    at: r.at,
                    actor: &r.actor,
                    action: &r.action,
                    certname: r.certname.as_deref(),
                    serial,
                    outcome: &r.outcome,
                    detail: r.detail.as_deref(),
                };
                if queries::audit_hash(&prev, &fields) != r.hash {
                    return Ok(tampered(
                        r.id,
                        "does not match the hash chain (it was changed, or a record before it removed)",
                    ));
                }
                match mac {
                    Some(m) if seal.row_ok(r.id, &r.hash, m) => sealed_seen = true,
                    Some(_) => return Ok(tampered(
                        r.id,
                        "does not match its seal (changed and re-hashed, or not written with this CA's key)",
                    )),
                    None if sealed_seen => {
                        return Ok(tampered(
                            r.id,
                            "is not sealed, yet follows sealed records (written without the CA key)",
                        ))
                    }
                    None => unsealed += 1,
                }
                if let Head::Sealed { id, hash } = &head {
                    if r.id == *id {
                        if r.hash != *hash {
                            return Ok(tampered(
                                r.id,
                                &format!("differs from the one {HEAD_FILE} names (the log was rewritten)"),
                            ));
                        }
                        head_seen = true;
                    }
                }
                prev.clone_from(&r.hash);
                after = r.id;
                records += 1;
            }
        }
        if records > 0 && !sealed_seen {
            return Ok(tampered(after, "is not sealed: the newest record must be"));
        }
        let newest = (records > 0).then_some((after, prev));
        match head {
            Head::Missing => Ok(AuditVerdict::Intact {
                records,
                unsealed,
                head: newest,
                head_file: false,
            }),
            Head::Invalid(why) => Ok(AuditVerdict::Tampered {
                record: None,
                why: format!("{}: {why}", seal.head_path().display()),
            }),
            Head::Sealed { id, .. } if !head_seen => Ok(AuditVerdict::Tampered {
                record: Some(if id > after { after + 1 } else { id }),
                why: if id > after {
                    format!(
                        "record {} is missing: {HEAD_FILE} names record {id}, the log ends at {after} (its newest records were removed)",
                        after + 1
                    )
                } else {
                    format!("record {id}, which {HEAD_FILE} names, is missing")
                },
            }),
            Head::Sealed { .. } => Ok(AuditVerdict::Intact {
                records,
                unsealed,
                head: newest,
                head_file: true,
            }),
        }
    }
    /// A consistent copy of the whole database into a new file (`VACUUM INTO`), safe while others write.
    /// The file is created here first, mode 0600 and exclusively: an existing file or a symbolic link
    /// (even a dangling one) in its place is refused, never followed.
    /// SQLite only: a PostgreSQL database is backed up with PostgreSQL's own tools (`pg_dump`).
    pub async fn backup(&self, path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.backend == Backend::Postgres {
            return Err(StoreError::Unsupported(
                "ca backup copies a SQLite database; back up PostgreSQL with pg_dump (or `ca migrate-store`)"
                    .into(),
            ));
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(StoreError::File(format!(
                    "{} is a symbolic link; refusing to write through it",
                    path.display()
                )))
            }
            Ok(_) => return Err(StoreError::Duplicate(path.display().to_string())),
            Err(_) => {}
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => StoreError::Duplicate(path.display().to_string()),
                _ => StoreError::Create {
                    path: path.display().to_string(),
                    source: e,
                },
            })?;
        // VACUUM INTO writes into an existing file only when it is empty: the one just created.
        let res = sqlx::query("VACUUM INTO $1")
            .bind(path.display().to_string())
            .execute(&self.pool)
            .await;
        if let Err(e) = res {
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }
        Ok(())
    }
    /// Audit rows, oldest first.
    pub async fn audit_rows(&self, certname: Option<&str>) -> Result<Vec<AuditRow>, StoreError> {
        read!(self, |c| queries::audit_rows(c, certname))
    }
    /// The next serial that will be issued.
    pub async fn peek_serial(&self) -> Result<u64, StoreError> {
        read!(self, |c| queries::counter(c, "serial"))
    }

    /// Whether serials are drawn outside the CA's write lock ([`Store::apart`],
    /// [`Apart::reserve_serials`]): on PostgreSQL, where a write transaction is several round trips
    /// to another process and the signing pipeline should not wait for one before a certificate can
    /// be signed. On SQLite a write is a transaction under the one write lock either way: serials
    /// are reserved in the pipeline's write transactions.
    pub fn reserves_apart(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// PostgreSQL: a connection for the reservation of serials outside the CA's write lock, and the
    /// reads that decide them (see [`Apart`]), kept out of the write pool (see [`pg_kept`]). Refused
    /// on SQLite.
    pub async fn apart(&self) -> Result<Apart, StoreError> {
        if !self.reserves_apart() {
            return Err(StoreError::Unsupported(
                "serials are reserved in a write transaction on SQLite".into(),
            ));
        }
        let conn = match &self.kept {
            Some(kept) => kept.take().await?,
            None => {
                return Err(StoreError::Unsupported(
                    "no connections are kept for the reservations".into(),
                ))
            }
        };
        Ok(Apart {
            conn,
            failover: self.failover.clone(),
            limit: self.kept.as_ref().map(|k| k.limit()).unwrap_or_default(),
        })
    }
}

/// A read-only transaction on `c` that sees one state of the database throughout (SQLite: any
/// transaction in WAL mode; PostgreSQL: REPEATABLE READ).
async fn snapshot_on(
    c: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<Transaction<'_, Any>, StoreError> {
    use sqlx::Connection;
    let mut tx = c.begin().await?;
    if backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

/// `res`, its error noted by `failover` (PostgreSQL), which starts a re-probe when the error
/// suggests the server is gone or no longer writable.
fn noted<T>(failover: Option<&Arc<failover::Failover>>, res: Result<T, StoreError>) -> Result<T, StoreError> {
    if let (Err(e), Some(f)) = (&res, failover) {
        f.note(e);
    }
    res
}

/// PostgreSQL: one connection, outside any write transaction, on which the signing pipeline reads
/// the requests it is asked to sign and reserves their serials (see [`Store::reserves_apart`]).
pub struct Apart {
    /// Kept after the last statement when every statement succeeded (see [`pg_kept`]).
    conn: pg_kept::KeptConn,
    failover: Option<Arc<failover::Failover>>,
    /// How long each statement may take.
    limit: pg_kept::Limit,
}

impl Apart {
    /// The pending requests of `certnames`, by name, as committed now (one statement).
    pub async fn requests_named(
        &mut self,
        certnames: &[&str],
    ) -> Result<std::collections::HashMap<String, RequestRow>, StoreError> {
        let read = within(
            self.limit.clone(),
            queries::requests_named(self.conn.conn()?, certnames),
        )
        .await;
        self.ended(read)
    }

    /// The current (highest, not cleaned) certificate of a certname, as committed now.
    pub async fn current_certificate(&mut self, certname: &str) -> Result<Option<CertRow>, StoreError> {
        let read = within(
            self.limit.clone(),
            queries::current_certificate(self.conn.conn()?, certname),
        )
        .await;
        self.ended(read)
    }

    /// A statement's outcome: its error noted (a failover may explain it); the connection may be
    /// kept when it succeeded.
    fn ended<T>(&mut self, res: Result<T, StoreError>) -> Result<T, StoreError> {
        if res.is_ok() {
            self.conn.done();
        }
        noted(self.failover.as_ref(), res)
    }

    /// Allocates `n` consecutive serials in one statement that is a transaction of its own: the
    /// counter's row lock orders it with every other allocation (the write transactions' included),
    /// so no serial is handed out twice. Its commit does not wait for the disk: a certificate with
    /// these serials is acknowledged only after a durable commit that stores it, and PostgreSQL's
    /// log is written (and replicated) in order, so that commit makes this one durable with it; a
    /// crash before it loses nothing anyone holds.
    pub async fn reserve_serials(&mut self, n: u64) -> Result<std::ops::Range<u64>, StoreError> {
        let end = within(
            self.limit.clone(),
            queries::bump_by_unsynced(self.conn.conn()?, "serial", queries::to_i64(n)?),
        )
        .await;
        let end = queries::to_u64(self.ended(end)?, "serial")?;
        Ok(end - n..end)
    }
}

/// A writer's place (SQLite): the cross-process lock, then this process's turn (dropped in this
/// order).
#[derive(Default)]
struct Queued {
    _file: Option<FileLock>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Queued {
    /// Whether this writer holds this process's turn (it did not stop waiting for it).
    fn in_turn(&self) -> bool {
        self._turn.is_some()
    }
}

/// A write transaction's connection.
enum Tx {
    /// sqlx's transaction on a pooled connection: PostgreSQL, SQLite's transactions other than the
    /// batched writers', and theirs when the direct connection is in another transaction (a writer
    /// that stopped waiting for its turn).
    Pooled(Transaction<'static, Any>),
    /// SQLite: a batched writer's transaction on a direct connection (see [`direct`]).
    Direct(direct::DirectTx),
    /// PostgreSQL: a write transaction on a kept connection (see [`pg_kept`]), begun with the write
    /// lock; kept after its commit, closed (the transaction with it) when dropped before.
    Kept(pg_kept::KeptConn),
}

impl Tx {
    /// sqlx's connection, the transaction begun on it: for all but the statements of the batched
    /// writers' transactions (see [`Store::write_batch`]).
    fn conn(&mut self) -> Result<&mut sqlx::AnyConnection, StoreError> {
        match self {
            Tx::Pooled(t) => Ok(&mut **t),
            Tx::Kept(k) => k.conn(),
            Tx::Direct(_) => Err(StoreError::Unsupported(
                "this write does not run in a batched writer's transaction".into(),
            )),
        }
    }

    /// The connection, for the statements of the batched writers' transactions.
    fn either(&mut self) -> Result<queries::Conn<'_>, StoreError> {
        match self {
            Tx::Pooled(t) => Ok(queries::Conn::Sqlx(t)),
            Tx::Kept(k) => Ok(queries::Conn::Sqlx(k.conn()?)),
            Tx::Direct(d) => Ok(queries::Conn::Direct(d.conn()?)),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Pooled(t) => t.commit().await.map_err(StoreError::from),
            Tx::Kept(mut k) => {
                k.conn()?.execute("COMMIT").await?;
                k.done();
                Ok(())
            }
            Tx::Direct(d) => d.commit(),
        }
    }
}

/// One write transaction. Dropped without `commit`, it rolls back.
pub struct WriteTx {
    tx: Tx,
    /// This process's turn to write and the writer lock (SQLite), released after `tx` commits or
    /// rolls back (fields drop in declaration order, and `commit` moves `tx` out first).
    _queued: Queued,
    seal: Option<Arc<AuditSeal>>,
    /// The last audit row appended in this transaction.
    head: Option<(i64, String)>,
    /// Whether the head file may move to it (checked at the first audit row).
    advance_head: Option<bool>,
    backend: Backend,
    /// PostgreSQL: told when the commit fails for a reason a failover explains.
    failover: Option<Arc<failover::Failover>>,
    /// SQLite: counted for the checkpointer.
    commits: Option<Arc<AtomicU64>>,
    /// PostgreSQL: audit ids drawn ahead ([`WriteTx::requests_named_before_audit`]).
    audit_ids: std::collections::VecDeque<i64>,
    /// SQLite: grown once this transaction, which changed the CRLs, commits.
    crl_mark: Option<Arc<crl_mark::CrlMark>>,
    /// PostgreSQL: how long each statement may take (see [`pg_kept::Limit`]).
    limit: pg_kept::Limit,
    /// Whether this transaction changed the CRLs ([`WriteTx::notify_crl_change`]).
    crl_changed: bool,
}

impl WriteTx {
    /// Commits, then moves the audit head file to the last row appended (best effort: a crash in
    /// between leaves the head one transaction behind, which verification accepts).
    /// A commit that fails is not retried: its outcome may be unknown (the server died after it), and
    /// only an acknowledged change must never be lost.
    pub async fn commit(self) -> Result<(), StoreError> {
        noted(self.failover.as_ref(), within(self.limit, self.tx.commit()).await)?;
        if let Some(c) = &self.commits {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let (true, Some(mark)) = (self.crl_changed, &self.crl_mark) {
            mark.grow();
        }
        if let (Some(seal), Some((id, hash)), Some(true)) = (self.seal, self.head, self.advance_head) {
            seal.write_head(id, &hash);
        }
        Ok(())
    }

    /// The chains of a key rollover: the next CA's (after `start`) and the previous CA's (after
    /// `switch`).
    pub async fn rollover_chains(&mut self) -> Result<(Option<String>, Option<String>), StoreError> {
        within(self.limit.clone(), queries::rollover_chains(self.tx.conn()?)).await
    }
    /// Publishes (or, with `None`, withdraws) the next CA's chain.
    pub async fn set_next_chain(&mut self, chain_pem: Option<&str>, now: i64) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::set_next_chain(self.tx.conn()?, chain_pem, now),
        )
        .await
    }
    /// Makes the next CA the current one (key identifier `key_id`), the current one the previous one;
    /// `audit_key_wrap`: the audit log's sealing key wrapped for the next CA key.
    pub async fn switch_ca(
        &mut self,
        key_id: &[u8],
        audit_key_wrap: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::switch_ca(self.tx.conn()?, key_id, audit_key_wrap, now),
        )
        .await
    }
    /// Forgets the previous CA (the end of a rollover).
    pub async fn end_rollover(&mut self, now: i64) -> Result<(), StoreError> {
        within(self.limit.clone(), queries::end_rollover(self.tx.conn()?, now)).await
    }
    /// Replaces the CA's chain (an extension: same key and subject), stored at `now`.
    pub async fn replace_ca_chain(&mut self, chain_pem: &str, now: i64) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::replace_ca_chain(self.tx.conn()?, chain_pem, now),
        )
        .await
    }
    /// Records the CA and its counters (setup and import).
    pub async fn init_ca(
        &mut self,
        chain_pem: &str,
        key_id: &[u8],
        first_serial: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::init_ca(self.tx.conn()?, chain_pem, key_id, first_serial, now),
        )
        .await
    }
    /// Allocates `n` consecutive serials (the counter holds the next serial to issue).
    pub async fn reserve_serials(&mut self, n: u64) -> Result<std::ops::Range<u64>, StoreError> {
        // One statement for the whole range: a row updated once per serial in one transaction slows
        // PostgreSQL down quadratically (every update adds a row version the next one walks).
        let end = within(
            self.limit.clone(),
            queries::bump_by(self.tx.conn()?, "serial", queries::to_i64(n)?),
        )
        .await?;
        let end = queries::to_u64(end, "serial")?;
        Ok(end - n..end)
    }
    /// The next serial (see [`WriteTx::reserve_serials`] for several).
    pub async fn next_serial(&mut self) -> Result<u64, StoreError> {
        // The counter holds the next serial to issue: hand out the value before the increment.
        let next = within(self.limit.clone(), queries::bump(self.tx.conn()?, "serial")).await?;
        queries::to_u64(next - 1, "serial")
    }
    /// The `Last-Modified` of the CRL being signed: `at_least` (now, rounded up to the second) or one
    /// second after the previous CRL's, whichever is later.
    pub async fn next_crl_last_modified(&mut self, at_least: i64) -> Result<i64, StoreError> {
        within(
            self.limit.clone(),
            queries::next_crl_last_modified(self.tx.conn()?, at_least),
        )
        .await
    }
    /// Allocates the next CRL number.
    pub async fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        // The counter holds the number of the last CRL (-1 before the first, so the first is 0).
        let n = within(self.limit.clone(), queries::bump(self.tx.conn()?, "crl_number")).await?;
        self.notify_crl_change().await?;
        queries::to_u64(n, "crl number")
    }
    /// Stores a pending request, replacing one of the same name when `replace`.
    pub async fn put_request(
        &mut self,
        certname: &str,
        csr_der: &[u8],
        status_json: &str,
        now: i64,
        by: &str,
        replace: bool,
    ) -> Result<(), StoreError> {
        let row = NewRequest {
            certname,
            csr_der,
            status_json,
            by,
        };
        within(
            self.limit.clone(),
            queries::put_requests(self.tx.conn()?, self.backend, &[row], now, replace),
        )
        .await
    }
    /// What each of `certnames` holds: `signed` or `revoked` (its current certificate), else
    /// `requested`; names holding nothing are left out.
    pub async fn name_states(
        &mut self,
        certnames: &[&str],
    ) -> Result<std::collections::HashMap<String, &'static str>, StoreError> {
        within(
            self.limit.clone(),
            queries::name_states(self.tx.conn()?, certnames),
        )
        .await
    }
    /// Stores pending requests in one statement (each name once), replacing those stored for the
    /// same names when `replace`.
    pub async fn put_requests(
        &mut self,
        rows: &[NewRequest<'_>],
        now: i64,
        replace: bool,
    ) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::put_requests(self.tx.conn()?, self.backend, rows, now, replace),
        )
        .await
    }
    /// A pending request.
    pub async fn request(&mut self, certname: &str) -> Result<Option<RequestRow>, StoreError> {
        within(self.limit.clone(), queries::request(self.tx.conn()?, certname)).await
    }
    /// The pending requests of `certnames`, by name (one statement).
    pub async fn requests_named(
        &mut self,
        certnames: &[&str],
    ) -> Result<std::collections::HashMap<String, RequestRow>, StoreError> {
        match &mut self.tx {
            Tx::Pooled(t) => queries::requests_named(&mut **t, certnames).await,
            Tx::Kept(k) => within(self.limit.clone(), queries::requests_named(k.conn()?, certnames)).await,
            // The same read as the one before audit rows (the audit log's ends unused here).
            tx => Ok(within(
                self.limit.clone(),
                queries::requests_and_audit_ends(tx.either()?, certnames, None, 0),
            )
            .await?
            .0),
        }
    }
    /// Removes a pending request; false when there was none.
    pub async fn delete_request(&mut self, certname: &str) -> Result<bool, StoreError> {
        Ok(within(
            self.limit.clone(),
            queries::delete_requests(self.tx.conn()?, &[certname]),
        )
        .await?
            > 0)
    }
    /// Removes the pending requests of `certnames` (one statement); how many there were.
    pub async fn delete_requests(&mut self, certnames: &[&str]) -> Result<u64, StoreError> {
        within(
            self.limit.clone(),
            queries::delete_requests(self.tx.conn()?, certnames),
        )
        .await
    }
    /// Stores an issued certificate.
    pub async fn insert_certificate(
        &mut self,
        row: &CertRow,
        status_json: &str,
        issued_at: i64,
        by: &str,
    ) -> Result<(), StoreError> {
        let new = NewCertificate { row, status_json, by };
        within(
            self.limit.clone(),
            queries::insert_certificates(self.tx.conn()?, self.backend, &[new], issued_at),
        )
        .await
    }
    /// Stores issued certificates (one statement).
    pub async fn insert_certificates(
        &mut self,
        certs: &[NewCertificate<'_>],
        issued_at: i64,
    ) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::insert_certificates(self.tx.conn()?, self.backend, certs, issued_at),
        )
        .await
    }
    /// The current certificate of a certname.
    pub async fn current_certificate(&mut self, certname: &str) -> Result<Option<CertRow>, StoreError> {
        within(
            self.limit.clone(),
            queries::current_certificate_in(self.tx.either()?, certname),
        )
        .await
    }
    /// Serials of a certname's certificates that are neither cleaned, revoked nor expired at `now`.
    pub async fn revocable_serials(&mut self, certname: &str, now: i64) -> Result<Vec<u64>, StoreError> {
        within(
            self.limit.clone(),
            queries::revocable_serials(self.tx.conn()?, certname, now),
        )
        .await
    }
    /// Records a revocation; false when the serial was already revoked.
    pub async fn revoke(
        &mut self,
        serial: u64,
        certname: Option<&str>,
        at: i64,
        reason: i64,
    ) -> Result<bool, StoreError> {
        within(
            self.limit.clone(),
            queries::revoke(self.tx.conn()?, serial, certname, at, reason),
        )
        .await
    }
    /// Marks every certificate of a certname cleaned; returns how many.
    pub async fn clean_certificates(&mut self, certname: &str, at: i64) -> Result<u64, StoreError> {
        within(
            self.limit.clone(),
            queries::clean_certificates(self.tx.conn()?, certname, at),
        )
        .await
    }
    /// Every revocation, by serial.
    pub async fn revocations(&mut self) -> Result<Vec<RevocationRow>, StoreError> {
        within(self.limit.clone(), queries::revocations(self.tx.conn()?)).await
    }
    /// Revoked serials whose certificates expired before `now`.
    pub async fn expired_revocations(&mut self, now: i64) -> Result<Vec<u64>, StoreError> {
        within(
            self.limit.clone(),
            queries::expired_revocations(self.tx.conn()?, now),
        )
        .await
    }
    /// Removes a revocation (prune: its certificate has expired).
    pub async fn delete_revocation(&mut self, serial: u64) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::delete_revocation(self.tx.conn()?, serial),
        )
        .await
    }
    /// Replaces the CRL of the parent at `position` (1 = direct parent).
    pub async fn set_parent_crl(&mut self, position: u32, der: &[u8]) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::set_parent_crl(self.tx.conn()?, position, der),
        )
        .await?;
        self.notify_crl_change().await
    }
    /// Tells the other processes on the database, at commit, that the CRLs changed: on PostgreSQL
    /// every replica's [`ChangeFeed`] (a notification sent in the transaction is delivered only if
    /// it commits), on SQLite the readers of `<database>-crl` ([`crl_mark`]).
    async fn notify_crl_change(&mut self) -> Result<(), StoreError> {
        self.crl_changed = true;
        if self.backend == Backend::Postgres {
            let notify = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CRL_CHANNEL)
                .execute(self.tx.conn()?);
            within(self.limit.clone(), notify).await?;
        }
        Ok(())
    }
    /// The infrastructure nodes' certnames.
    pub async fn infra_nodes(&mut self) -> Result<Vec<String>, StoreError> {
        within(self.limit.clone(), queries::infra_nodes(self.tx.conn()?)).await
    }
    /// Adds (`add`) or removes an infrastructure node; whether anything changed.
    pub async fn set_infra_node(&mut self, certname: &str, add: bool) -> Result<bool, StoreError> {
        within(
            self.limit.clone(),
            queries::set_infra_node(self.tx.conn()?, certname, add),
        )
        .await
    }
    /// The revocations of infrastructure nodes' certificates.
    pub async fn infra_revocations(&mut self) -> Result<Vec<RevocationRow>, StoreError> {
        within(self.limit.clone(), queries::infra_revocations(self.tx.conn()?)).await
    }
    /// Whether any of these (revoked) serials is an infrastructure node's.
    pub async fn any_infra_serial(&mut self, serials: &[u64]) -> Result<bool, StoreError> {
        within(
            self.limit.clone(),
            queries::any_infra_serial(self.tx.conn()?, serials),
        )
        .await
    }
    /// The infrastructure CRL.
    pub async fn infra_crl(&mut self) -> Result<Option<CrlRow>, StoreError> {
        within(self.limit.clone(), queries::infra_crl(self.tx.conn()?)).await
    }
    /// Replaces the infrastructure CRL (readers reload the served chain).
    pub async fn store_infra_crl(&mut self, row: &CrlRow) -> Result<(), StoreError> {
        within(self.limit.clone(), queries::store_infra_crl(self.tx.conn()?, row)).await?;
        self.notify_crl_change().await
    }
    /// The parents' CRLs.
    pub async fn parent_crls(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        within(self.limit.clone(), queries::parent_crls(self.tx.conn()?)).await
    }
    /// Sets the serial counter (the next serial to issue; import) — never lowers it.
    pub async fn raise_next_serial(&mut self, next: u64) -> Result<(), StoreError> {
        let current = within(self.limit.clone(), queries::counter(self.tx.conn()?, "serial")).await?;
        if next > current {
            within(
                self.limit.clone(),
                queries::set_counter(self.tx.conn()?, "serial", queries::to_i64(next)?),
            )
            .await?;
        }
        Ok(())
    }
    /// Sets the number of the current CRL (import) — never lowers it.
    pub async fn raise_crl_number(&mut self, number: u64) -> Result<(), StoreError> {
        let read = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'crl_number'")
            .fetch_one(self.tx.conn()?);
        let current: i64 = within(self.limit.clone(), read).await?;
        let n = queries::to_i64(number)?;
        if n > current {
            within(
                self.limit.clone(),
                queries::set_counter(self.tx.conn()?, "crl_number", n),
            )
            .await?;
            self.notify_crl_change().await?;
        }
        Ok(())
    }
    /// Keeps an imported inventory line (a certificate we hold no copy of).
    pub async fn insert_inventory_line(&mut self, serial: u64, line: &str) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::insert_inventory_line(self.tx.conn()?, serial, line),
        )
        .await
    }
    /// Who `serial` was issued to: a stored certificate's certname, else an imported inventory line.
    pub async fn serial_owner(
        &mut self,
        serial: u64,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        within(self.limit.clone(), queries::serial_owner(self.tx.conn()?, serial)).await
    }
    /// Whether `serial` is revoked.
    pub async fn is_revoked(&mut self, serial: u64) -> Result<bool, StoreError> {
        within(self.limit.clone(), queries::is_revoked(self.tx.conn()?, serial)).await
    }
    /// The next serial to issue, as this transaction sees it.
    pub async fn peek_serial(&mut self) -> Result<u64, StoreError> {
        within(self.limit.clone(), queries::counter(self.tx.conn()?, "serial")).await
    }
    /// Whether a certificate with this serial is stored.
    pub async fn certificate_exists(&mut self, serial: u64) -> Result<bool, StoreError> {
        within(
            self.limit.clone(),
            queries::certificate_exists(self.tx.conn()?, serial),
        )
        .await
    }
    /// The CA chain PEM and key id.
    pub async fn ca(&mut self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        within(self.limit.clone(), queries::ca(self.tx.conn()?)).await
    }
    /// The stored CRL's number, nextUpdate and the relying parties' CRL's nextUpdate, without reading
    /// its entries.
    pub async fn crl_dates(&mut self) -> Result<Option<(u64, i64, Option<i64>)>, StoreError> {
        Ok(within(self.limit.clone(), queries::crl_meta(self.tx.conn()?))
            .await?
            .map(|m| (m.row.number, m.row.next_update, m.row.relying_next_update)))
    }
    /// The number of the last CRL signed.
    pub async fn crl_number(&mut self) -> Result<Option<u64>, StoreError> {
        within(self.limit.clone(), queries::crl_number(self.tx.conn()?)).await
    }
    /// What changed in the stored CRL since CRL `held` (see [`Store::crl_since`]).
    pub async fn crl_since(&mut self, held: Option<u64>) -> Result<CrlUpdate, StoreError> {
        within(self.limit.clone(), crl_since(self.tx.conn()?, held)).await
    }
    /// Replaces the current CRL with a newer one: stores only what it appends to the stored one when
    /// `layout` says it does (see [`CrlLayout`]).
    pub async fn store_crl(&mut self, row: &CrlRow, layout: &CrlLayout) -> Result<(), StoreError> {
        within(
            self.limit.clone(),
            queries::store_crl(self.tx.conn()?, row, layout),
        )
        .await
    }
    /// Appends an audit row (sealed, when the CA key is loaded).
    pub async fn audit(&mut self, rec: &AuditRecord<'_>) -> Result<(), StoreError> {
        self.audit_all(std::slice::from_ref(rec)).await
    }
    /// Appends audit rows in order (on SQLite in one statement).
    pub async fn audit_all(&mut self, recs: &[AuditRecord<'_>]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        let prev = self.audit_head().await?;
        self.head = within(
            self.limit.clone(),
            queries::audit(
                self.tx.conn()?,
                self.backend,
                recs,
                self.seal.as_deref(),
                prev,
                &mut self.audit_ids,
            ),
        )
        .await?;
        Ok(())
    }

    /// The last audit row (when known) before rows are appended; at the transaction's first rows,
    /// with a seal, also decides whether the head file may move on (one look-up).
    async fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        let prev = self.head.take();
        let Some(head) = self.head_file_unchecked() else {
            return Ok(prev);
        };
        let ends = within(
            self.limit.clone(),
            queries::audit_ends(self.tx.either()?, head_named(&head)),
        )
        .await?;
        self.check_head_file(head, &ends);
        Ok(prev.or(ends.last))
    }

    /// The head file as read now, when this transaction's first audit rows still have to check it.
    fn head_file_unchecked(&self) -> Option<Head> {
        match (&self.seal, self.advance_head) {
            (Some(seal), None) => Some(seal.read_head()),
            _ => None,
        }
    }

    /// Decides whether the head file may move on at commit, from the log's ends as read.
    fn check_head_file(&mut self, head: Head, ends: &queries::AuditEnds) {
        if let Some(seal) = &self.seal {
            self.advance_head = Some(head_may_advance(seal, head, ends.named_hash.as_deref()));
        }
    }

    /// The pending requests of `certnames` (like [`WriteTx::requests_named`]), read with what the
    /// transaction's audit rows need first (the log's last row, the head file's record and, on
    /// PostgreSQL, `audits` ids from the audit sequence): one round trip for what took three.
    pub async fn requests_named_before_audit(
        &mut self,
        certnames: &[&str],
        audits: usize,
    ) -> Result<std::collections::HashMap<String, RequestRow>, StoreError> {
        let (head, named, ids) = self.before_audit(audits);
        let (requests, ends) = within(
            self.limit.clone(),
            queries::requests_and_audit_ends(self.tx.either()?, certnames, named, ids),
        )
        .await?;
        self.audit_ends_read(head, ends);
        Ok(requests)
    }

    /// What each of `certnames` holds (like [`WriteTx::name_states`]), read with what the
    /// transaction's `audits` audit rows need first (see [`WriteTx::requests_named_before_audit`]).
    pub async fn name_states_before_audit(
        &mut self,
        certnames: &[&str],
        audits: usize,
    ) -> Result<std::collections::HashMap<String, &'static str>, StoreError> {
        let (head, named, ids) = self.before_audit(audits);
        let (states, ends) = within(
            self.limit.clone(),
            queries::name_states_and_audit_ends(self.tx.either()?, certnames, named, ids),
        )
        .await?;
        self.audit_ends_read(head, ends);
        Ok(states)
    }

    /// Before a read of the audit log's ends: the head file (when still to be checked), the record
    /// it names, and how many ids to draw ahead for `audits` rows (PostgreSQL).
    fn before_audit(&self, audits: usize) -> (Option<Head>, Option<i64>, usize) {
        let head = self.head_file_unchecked();
        let named = head.as_ref().and_then(head_named);
        let ids = if self.backend == Backend::Postgres {
            audits
        } else {
            0
        };
        (head, named, ids)
    }

    /// After a read of the audit log's ends: the head file checked, the last row and the ids kept.
    fn audit_ends_read(&mut self, head: Option<Head>, ends: queries::AuditEnds) {
        if let Some(head) = head {
            self.check_head_file(head, &ends);
        }
        if self.head.is_none() {
            self.head = ends.last;
        }
        self.audit_ids.extend(ends.ids);
    }

    /// A signing round's writes in one round trip, then the commit: stores `certs`, removes the
    /// pending requests `taken`, appends `audits` and reserves `reserve` consecutive serials
    /// (returned). On SQLite the `COMMIT` goes in the same round trip as the writes.
    pub async fn store_round_and_commit(
        mut self,
        certs: &[NewCertificate<'_>],
        issued_at: i64,
        taken: &[&str],
        audits: &[AuditRecord<'_>],
        reserve: u64,
    ) -> Result<std::ops::Range<u64>, StoreError> {
        let (rows, last) = self.audit_rows(audits).await?;
        let mut w = queries::Writes::default();
        w.certificates(certs, issued_at)?;
        w.delete_requests(taken);
        w.audit(&rows);
        w.reserve_serials(reserve)?;
        let end = self.run_writes(w).await?;
        if !audits.is_empty() {
            self.head = last;
        }
        self.commit().await?;
        match end {
            Some(end) => {
                let end = queries::to_u64(end, "serial")?;
                Ok(end.saturating_sub(reserve)..end)
            }
            None => Ok(0..0),
        }
    }

    /// Certificate requests' writes in one round trip, then the commit: stores `rows` (like
    /// [`WriteTx::put_requests`]) and appends `audits`. On SQLite the `COMMIT` goes in the same
    /// round trip as the writes.
    pub async fn store_requests_and_commit(
        mut self,
        rows: &[NewRequest<'_>],
        now: i64,
        replace: bool,
        audits: &[AuditRecord<'_>],
    ) -> Result<(), StoreError> {
        let (inserts, last) = self.audit_rows(audits).await?;
        let mut w = queries::Writes::default();
        w.requests(rows, now, replace);
        w.audit(&inserts);
        self.run_writes(w).await?;
        if !audits.is_empty() {
            self.head = last;
        }
        self.commit().await
    }

    /// Runs writes; the counter's new value when they reserved serials.
    async fn run_writes(&mut self, w: queries::Writes<'_>) -> Result<Option<i64>, StoreError> {
        if w.is_empty() {
            return Ok(None);
        }
        within(self.limit.clone(), w.run(self.tx.either()?, self.backend)).await
    }

    /// The rows that append `audits` to the chain (ids, hashes, seals), and the chain's new end;
    /// nothing when there are none.
    async fn audit_rows<'r>(
        &mut self,
        audits: &'r [AuditRecord<'r>],
    ) -> Result<(Vec<queries::AuditInsert<'r>>, Option<(i64, String)>), StoreError> {
        if audits.is_empty() {
            return Ok((Vec::new(), None));
        }
        let prev = self.audit_head().await?;
        within(
            self.limit.clone(),
            queries::audit_inserts(
                self.tx.either()?,
                self.backend,
                audits,
                self.seal.as_deref(),
                prev,
                &mut self.audit_ids,
            ),
        )
        .await
    }
}

/// The audit record the head file names, if any.
fn head_named(head: &Head) -> Option<i64> {
    match head {
        Head::Sealed { id, .. } => Some(*id),
        _ => None,
    }
}

/// Whether the head file may be moved on: it is missing, or names a record the log still holds with
/// the same hash. Otherwise the log was cut or rewritten since it was written: it stays as evidence.
/// `head` is the head file as read, `named_hash` the hash the log holds for the record it names.
fn head_may_advance(seal: &AuditSeal, head: Head, named_hash: Option<&str>) -> bool {
    match head {
        Head::Missing => true,
        Head::Invalid(why) => {
            tracing::error!(path = %seal.head_path().display(), %why,
                "the audit head file is not valid; it is left as it is (run `ca audit verify`)");
            false
        }
        Head::Sealed { id, hash } => {
            if named_hash == Some(hash.as_str()) {
                return true;
            }
            tracing::error!(
                record = id,
                "the audit log no longer holds the record the audit head names: it was cut or rewritten; \
                 the head file is left as it is (run `ca audit verify`)"
            );
            false
        }
    }
}

/// What changed in the stored CRL since CRL `held` (see [`Store::crl_since`]).
async fn crl_since(c: &mut sqlx::AnyConnection, held: Option<u64>) -> Result<CrlUpdate, StoreError> {
    Ok(match queries::crl_meta(c).await? {
        None => return Err(StoreError::Corrupt("no CRL has been published".into())),
        Some(m) if Some(m.row.number) == held => CrlUpdate::Unchanged,
        Some(m) => match (m.pieces, held) {
            (Some((head, tail, from)), Some(h)) if from <= queries::to_i64(h)? && h < m.row.number => {
                let added = queries::crl_segments(c, queries::to_i64(h)? + 1, queries::to_i64(m.row.number)?)
                    .await?
                    .concat();
                CrlUpdate::Appended {
                    row: m.row,
                    head,
                    added,
                    tail,
                }
            }
            (pieces, _) => CrlUpdate::Whole {
                pieces: pieces.is_some(),
                row: assemble_crl(c, m.row, pieces).await?,
            },
        },
    })
}

/// The stored CRL, whole.
async fn whole_crl(c: &mut sqlx::AnyConnection) -> Result<Option<CrlRow>, StoreError> {
    match queries::crl_meta(c).await? {
        None => Ok(None),
        Some(m) => Ok(Some(assemble_crl(c, m.row, m.pieces).await?)),
    }
}

/// A CRL row's DER from its head, segments and tail (rows from before segments hold it whole).
async fn assemble_crl(
    c: &mut sqlx::AnyConnection,
    mut row: CrlRow,
    pieces: Option<(Vec<u8>, Vec<u8>, i64)>,
) -> Result<CrlRow, StoreError> {
    if let Some((head, tail, from)) = pieces {
        // In the first segment's buffer (megabytes for a CRL signed whole): grown in place and its
        // bytes moved up for the head, rather than copied into memory the process must first fault in.
        let mut segments = queries::crl_segments(c, from, queries::to_i64(row.number)?)
            .await?
            .into_iter();
        let mut der = segments.next().unwrap_or_default();
        let rest: Vec<Vec<u8>> = segments.collect();
        der.reserve(head.len() + rest.iter().map(Vec::len).sum::<usize>() + tail.len());
        der.splice(0..0, head.iter().copied());
        for s in &rest {
            der.extend_from_slice(s);
        }
        der.extend_from_slice(&tail);
        row.der = der;
    }
    Ok(row)
}

/// What [`Store::copy_into`] moved, table by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// (table, rows copied).
    pub tables: Vec<(&'static str, u64)>,
}

/// A column's type, for copying rows between backends.
#[derive(Clone, Copy)]
enum Col {
    Int,
    OptInt,
    Text,
    OptText,
    Blob,
    OptBlob,
}

/// Every table of the CA's state with its columns, in an order that keeps references valid.
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "ca",
        &[
            ("id", Col::Int),
            ("chain_pem", Col::Text),
            ("key_id", Col::Blob),
            ("created_at", Col::Int),
            ("next_chain_pem", Col::OptText),
            ("previous_chain_pem", Col::OptText),
            ("audit_key_wrap", Col::OptBlob),
        ],
    ),
    ("counters", &[("name", Col::Text), ("value", Col::Int)]),
    (
        "requests",
        &[
            ("certname", Col::Text),
            ("csr_der", Col::Blob),
            ("fingerprint", Col::Text),
            ("status_json", Col::Text),
            ("submitted_at", Col::Int),
            ("submitted_by", Col::Text),
        ],
    ),
    (
        "certificates",
        &[
            ("serial", Col::Int),
            ("certname", Col::Text),
            ("der", Col::Blob),
            ("fingerprint", Col::Text),
            ("status_json", Col::Text),
            ("not_before", Col::Int),
            ("not_after", Col::Int),
            ("issued_at", Col::Int),
            ("issued_by", Col::Text),
            ("cleaned_at", Col::OptInt),
        ],
    ),
    (
        "revocations",
        &[
            ("serial", Col::Int),
            ("certname", Col::OptText),
            ("revoked_at", Col::Int),
            ("reason", Col::Int),
        ],
    ),
    (
        "crl",
        &[
            ("id", Col::Int),
            ("number", Col::Int),
            ("this_update", Col::Int),
            ("next_update", Col::Int),
            ("der", Col::Blob),
            ("last_modified", Col::Int),
            ("head", Col::OptBlob),
            ("tail", Col::OptBlob),
            ("entries_from", Col::OptInt),
            ("relying_next_update", Col::OptInt),
            ("relying_head", Col::OptBlob),
            ("relying_tail", Col::OptBlob),
            ("previous_head", Col::OptBlob),
            ("previous_tail", Col::OptBlob),
        ],
    ),
    ("crl_segments", &[("number", Col::Int), ("entries", Col::Blob)]),
    ("parent_crls", &[("position", Col::Int), ("der", Col::Blob)]),
    ("infra_nodes", &[("certname", Col::Text)]),
    (
        "infra_crl",
        &[
            ("id", Col::Int),
            ("number", Col::Int),
            ("this_update", Col::Int),
            ("next_update", Col::Int),
            ("der", Col::Blob),
        ],
    ),
    ("imported_inventory", &[("serial", Col::Int), ("line", Col::Text)]),
    (
        "audit",
        &[
            ("id", Col::Int),
            ("at", Col::Int),
            ("actor", Col::Text),
            ("action", Col::Text),
            ("certname", Col::OptText),
            ("serial", Col::OptInt),
            ("outcome", Col::Text),
            ("detail", Col::OptText),
            ("hash", Col::Text),
            ("mac", Col::OptText),
        ],
    ),
];

impl Store {
    /// Copies the whole state into `dest`, which must hold no CA: one read of this store under its
    /// write lock (no writer changes it meanwhile), one transaction (under the write lock) on `dest`. Serials, counters, the CRL (byte for byte)
    /// and the audit chain with its seals arrive unchanged, so `dest` lists, verifies and serves
    /// identically.
    pub async fn copy_into(&self, dest: &Store) -> Result<CopyReport, StoreError> {
        use sqlx::Row;
        let mut out = dest.write().await?;
        if queries::ca(out.tx.conn()?).await?.is_some() {
            return Err(StoreError::Duplicate("a CA in the destination database".into()));
        }
        // The source's write lock: no writer changes it while it is read (and the read is one snapshot).
        let mut src = self.begin_write().await?;
        let mut report = CopyReport::default();
        for (table, cols) in TABLES {
            let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
            let select = format!("SELECT {} FROM {table} ORDER BY 1", names.join(", "));
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            );
            let rows = sqlx::query(&select).fetch_all(&mut *src).await?;
            for row in &rows {
                let mut q = sqlx::query(&insert);
                for (i, (_, col)) in cols.iter().enumerate() {
                    q = match col {
                        Col::Int => q.bind(row.try_get::<i64, _>(i)?),
                        Col::OptInt => q.bind(row.try_get::<Option<i64>, _>(i)?),
                        Col::Text => q.bind(row.try_get::<String, _>(i)?),
                        Col::OptText => q.bind(row.try_get::<Option<String>, _>(i)?),
                        Col::Blob => q.bind(row.try_get::<Vec<u8>, _>(i)?),
                        Col::OptBlob => q.bind(row.try_get::<Option<Vec<u8>>, _>(i)?),
                    };
                }
                q.execute(out.tx.conn()?).await?;
            }
            report.tables.push((table, rows.len() as u64));
        }
        // The audit id keeps counting from where the source was.
        if dest.backend == Backend::Postgres {
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('audit', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM audit), false)",
            )
            .execute(out.tx.conn()?)
            .await?;
        }
        out.commit().await?;
        src.rollback().await?;
        Ok(report)
    }
}
