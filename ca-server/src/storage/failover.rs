//! Following the writable server of a PostgreSQL primary/standby set (a URL listing several hosts,
//! `pg_hosts.rs`): the store's pool connects to one server at a time, chosen by probing the list; when
//! that server goes away (a connection dies, an idle one no longer answers, a new one lands on a
//! standby, a write fails with a connection error or on a read-only server) one background re-probe
//! looks for the server that now qualifies and points the pool at it. Connections opened before the
//! switch are not used again.
//!
//! Nothing is retried here: an operation that failed returns its error (a write whose commit outcome is
//! unknown must not be replayed); the ones after the switch go to the new primary. sqlx's pool re-reads
//! its connect options on every attempt, so an acquire waiting for a refused server when the switch
//! happens connects to the new one.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AnyPool, Connection};

use super::pg_hosts::{Candidate, PgHosts, SessionAttrs};
use super::StoreError;
use crate::error::Chain;

/// Longest wait for one server to answer a probe.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between rounds of a re-probe that found no server.
const REPROBE_EVERY: Duration = Duration::from_millis(200);
/// A re-probe gives up after this long (the next failure starts another).
const REPROBE_FOR: Duration = Duration::from_secs(30);
/// A failure within this long after a re-probe confirmed the current server starts none.
const COOLDOWN: Duration = Duration::from_millis(250);

/// The server list of a store and which one its pool uses.
pub(crate) struct Failover {
    hosts: PgHosts,
    /// Index of the candidate the pool connects to.
    current: AtomicUsize,
    /// Counts switches (the change feed reconnects when it moved).
    generation: AtomicU64,
    /// When the pool last moved to another server: older connections are not used again.
    switched_at: Mutex<Option<Instant>>,
    /// A re-probe is running.
    probing: AtomicBool,
    /// When a re-probe last found the current server still qualifying.
    confirmed_at: Mutex<Option<Instant>>,
    /// The store's pool (set once it exists).
    pool: OnceLock<AnyPool>,
    /// The store's write pool (see [`WRITE_CONNECTIONS`]), pointed at the same server.
    writer: OnceLock<AnyPool>,
}

/// Connections of the store's pool: reads, from the request threads.
const CONNECTIONS: u32 = 16;

/// Connections of the write pool: the write transactions and the serial reservations. A socket is
/// watched by the runtime of the thread that opened it, so a pool of its own, opened from the
/// writers' thread (`Store::reopen_write_connections`), has each answer of PostgreSQL wake that
/// thread directly, not first a request thread that then wakes it; and its few connections keep
/// the write statements prepared. More than one: the signing pipeline reserves serials while a
/// write transaction is under way. Beyond four, a writer waits here for a connection (at most the
/// pool's acquire timeout) instead of holding one while it waits for the server's write lock.
const WRITE_CONNECTIONS: u32 = 4;

impl std::fmt::Debug for Failover {
    /// Hosts and ports only: the URLs may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("hosts", &self.hosts.labels())
            .field("target_session_attrs", &self.hosts.attrs.as_str())
            .field("current", &self.current_label())
            .finish()
    }
}

/// What a probe found on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerState {
    pub in_recovery: bool,
    pub read_only: bool,
}

impl ServerState {
    fn describe(self) -> &'static str {
        match (self.in_recovery, self.read_only) {
            (true, _) => "a standby (in recovery)",
            (false, true) => "read-only",
            (false, false) => "writable (a primary)",
        }
    }
}

/// The query that tells a primary from a standby.
const STATE_SQL: &str = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')";

/// Connects to one candidate and reads its state, within [`PROBE_TIMEOUT`].
async fn probe(c: &Candidate) -> Result<ServerState, String> {
    let opts = PgConnectOptions::from_str(c.url()).map_err(|e| format!("bad URL: {}", Chain(&e)))?;
    let check = async {
        let mut conn = PgConnection::connect_with(&opts).await?;
        let (in_recovery, read_only): (bool, String) = sqlx::query_as(STATE_SQL).fetch_one(&mut conn).await?;
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(ServerState {
            in_recovery,
            read_only: read_only == "on",
        })
    };
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Chain(&e).to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// The first candidate that qualifies (libpq's order: the list's), or what each one was.
async fn choose(hosts: &PgHosts, first: Option<usize>) -> Result<usize, String> {
    let mut order: Vec<usize> = (0..hosts.candidates.len()).collect();
    if let Some(f) = first.filter(|f| *f < order.len()) {
        order.retain(|i| *i != f);
        order.insert(0, f);
    }
    let mut seen = Vec::with_capacity(order.len());
    let mut connected = None;
    for &i in &order {
        let Some(c) = hosts.candidates.get(i) else {
            continue;
        };
        match probe(c).await {
            Ok(state) => {
                if hosts.attrs.accepts(state.in_recovery, state.read_only) {
                    return Ok(i);
                }
                connected.get_or_insert(i);
                seen.push(format!("{} ({})", c.label(), state.describe()));
            }
            Err(e) => seen.push(format!("{} ({e})", c.label())),
        }
    }
    if hosts.attrs == SessionAttrs::PreferStandby {
        if let Some(i) = connected {
            return Ok(i);
        }
    }
    Err(format!(
        "no database server is {} (target_session_attrs={}): {}",
        match hosts.attrs {
            SessionAttrs::Any | SessionAttrs::PreferStandby => "reachable",
            SessionAttrs::ReadWrite => "writable",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "a primary",
            SessionAttrs::Standby => "a standby",
        },
        hosts.attrs.as_str(),
        seen.join(", ")
    ))
}

/// Whether an error says the server went away or can no longer take writes (a failover is a
/// likely cause): connection and I/O errors, SQLSTATE class 08, 25006 (read-only transaction), 57P01-03
/// (administrator/crash shutdown, cannot connect now), a pool that could not connect in time.
pub(crate) fn is_failover_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "25006" | "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// How long after its release (when sqlx pinged it) a pooled connection is handed out untested.
pub(super) const RECENTLY_TESTED: Duration = Duration::from_secs(1);

impl Failover {
    /// Parses the URL, chooses the server, and opens the store's pool on it, and its write pool (no
    /// connection until one is needed).
    pub(crate) async fn open(url: &str) -> Result<(AnyPool, AnyPool, Arc<Failover>), StoreError> {
        let hosts = super::pg_hosts::parse(url)
            .map_err(|e| StoreError::Db(sqlx::Error::Configuration(Box::new(e))))?;
        let first = if hosts.needs_probe() {
            choose(&hosts, None).await.map_err(StoreError::Unsupported)?
        } else {
            0
        };
        let f = Arc::new(Failover {
            hosts,
            current: AtomicUsize::new(first),
            generation: AtomicU64::new(0),
            switched_at: Mutex::new(None),
            probing: AtomicBool::new(false),
            confirmed_at: Mutex::new(None),
            pool: OnceLock::new(),
            writer: OnceLock::new(),
        });
        let Some(chosen) = f.current_candidate() else {
            return Err(StoreError::Unsupported("the database URL names no server".into()));
        };
        let opts = AnyConnectOptions::from_str(chosen.url())?;
        let pool = f.pool_options(CONNECTIONS).connect_with(opts.clone()).await?;
        let writer = f.pool_options(WRITE_CONNECTIONS).connect_lazy_with(opts);
        let _ = f.pool.set(pool.clone());
        let _ = f.writer.set(writer.clone());
        if f.hosts.candidates.len() > 1 {
            tracing::info!(
                hosts = %f.hosts.labels(),
                using = %f.current_label(),
                target_session_attrs = f.hosts.attrs.as_str(),
                "database server chosen"
            );
        }
        Ok((pool, writer, f))
    }

    /// The options of a pool of the store: at most `max` connections, each checked to be on the
    /// server in use. The hooks hold the failover weakly (it holds the pools).
    fn pool_options(self: &Arc<Self>, max: u32) -> AnyPoolOptions {
        let (w1, w2) = (Arc::downgrade(self), Arc::downgrade(self));
        AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            // The ping is done in before_acquire, where a failure can start a re-probe.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let w = Weak::clone(&w1);
                Box::pin(async move {
                    let f = w.upgrade();
                    if f.as_ref().is_some_and(|f| f.opened_before_switch(meta.age)) {
                        return Ok(false);
                    }
                    // sqlx pings a connection when it is released to the pool (and closes it when
                    // that fails): one back for less than RECENTLY_TESTED is handed out without a
                    // second round trip. A failure of its next statement is noted like any other.
                    if meta.idle_for < RECENTLY_TESTED {
                        return Ok(true);
                    }
                    // Bounded: a server that vanished without closing its connections never answers,
                    // and the pool's acquire would wait for it until its own timeout.
                    let err = match tokio::time::timeout(PROBE_TIMEOUT, conn.ping()).await {
                        Ok(Ok(())) => return Ok(true),
                        Ok(Err(e)) => e,
                        Err(_) => sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the database server did not answer a ping",
                        )),
                    };
                    if let Some(f) = f {
                        f.suspect();
                    }
                    Err(err)
                })
            })
            .after_connect(move |conn, _meta| {
                let w = Weak::clone(&w2);
                Box::pin(async move {
                    // No JIT compilation: it pays off for long analytic queries, never for ours (a
                    // few rows by key); its compile takes tens to hundreds of milliseconds whenever
                    // the planner's cost estimate (stale statistics after a bulk load, a long IN
                    // list) crosses jit_above_cost.
                    sqlx::query("SET jit = off").execute(&mut *conn).await?;
                    let Some(f) = w.upgrade() else { return Ok(()) };
                    let attrs = f.hosts.attrs;
                    if matches!(attrs, SessionAttrs::Any | SessionAttrs::PreferStandby) {
                        return Ok(());
                    }
                    let (in_recovery, read_only): (bool, String) =
                        sqlx::query_as(STATE_SQL).fetch_one(&mut *conn).await?;
                    if attrs.accepts(in_recovery, read_only == "on") {
                        return Ok(());
                    }
                    // The server changed role under us: find the one that qualifies now.
                    f.suspect();
                    let state = ServerState {
                        in_recovery,
                        read_only: read_only == "on",
                    };
                    Err(sqlx::Error::Protocol(format!(
                        "{} is {}, not {} as target_session_attrs asks",
                        f.current_label(),
                        state.describe(),
                        attrs.as_str()
                    )))
                })
            })
    }

    /// The candidate the pool connects to (None only for an empty list, which `open` refuses).
    pub(crate) fn current_candidate(&self) -> Option<&Candidate> {
        self.hosts.candidates.get(self.current.load(Ordering::Acquire))
    }

    /// The label of the server in use, for messages.
    fn current_label(&self) -> String {
        self.current_candidate().map(Candidate::label).unwrap_or_default()
    }

    /// The URL of the server in use and the switch count, for the change feed's own connection.
    pub(crate) fn current_url(&self) -> Option<(String, u64)> {
        let g = self.generation.load(Ordering::Acquire);
        self.current_candidate().map(|c| (c.url().to_string(), g))
    }

    /// How many times the pool moved to another server.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a connection this old was opened before the last switch.
    fn opened_before_switch(&self, age: Duration) -> bool {
        let switched = self.switched_at.lock().ok().and_then(|g| *g);
        switched.is_some_and(|t| age > t.elapsed())
    }

    /// Returns once no re-probe runs, or after `max`: a connection opened meanwhile would go to the
    /// server that failed (the pool reads its server when it connects, and waits for an answer until
    /// its acquire timeout).
    pub(crate) async fn settled(&self, max: Duration) {
        let until = Instant::now() + max;
        while self.probing.load(Ordering::Acquire) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Notes an error of an operation: one that suggests a failover starts a re-probe.
    pub(crate) fn note(self: &Arc<Self>, e: &StoreError) {
        if let StoreError::Db(e) = e {
            if is_failover_error(e) {
                self.suspect();
            }
        }
    }

    /// The server in use may be gone or no longer writable: starts one re-probe in the background
    /// unless one is running (concurrent failures start one, not a storm) or one just confirmed it.
    pub(crate) fn suspect(self: &Arc<Self>) {
        if self.hosts.candidates.len() < 2 {
            return;
        }
        let recently = self
            .confirmed_at
            .lock()
            .ok()
            .and_then(|g| *g)
            .is_some_and(|t| t.elapsed() < COOLDOWN);
        if recently {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        rt.spawn(async move {
            me.reprobe().await;
            me.probing.store(false, Ordering::Release);
        });
    }

    /// Probes until a server qualifies (the current one first: a running replica never moves back to
    /// a server listed earlier while its own still qualifies), then points the pool at it.
    async fn reprobe(&self) {
        let started = Instant::now();
        let mut warned = false;
        loop {
            let Some(pool) = self.pool.get() else { return };
            if pool.is_closed() {
                return;
            }
            let current = self.current.load(Ordering::Acquire);
            match choose(&self.hosts, Some(current)).await {
                Ok(i) if i == current => {
                    if let Ok(mut g) = self.confirmed_at.lock() {
                        *g = Some(Instant::now());
                    }
                    if warned {
                        tracing::info!(server = %self.current_label(), "the database server answers again");
                    }
                    return;
                }
                Ok(i) => {
                    self.switch(pool, i, started.elapsed());
                    return;
                }
                Err(why) => {
                    if !warned {
                        tracing::warn!(%why, "lost the database server; probing the list until one qualifies");
                        warned = true;
                    }
                }
            }
            if started.elapsed() >= REPROBE_FOR {
                tracing::warn!(
                    "no database server qualified for {} s; the next failure probes again",
                    REPROBE_FOR.as_secs()
                );
                return;
            }
            tokio::time::sleep(REPROBE_EVERY).await;
        }
    }

    /// Points the pool at candidate `i`: new connections go there, older ones are not used again.
    fn switch(&self, pool: &AnyPool, i: usize, searched: Duration) {
        let Some(c) = self.hosts.candidates.get(i) else {
            return;
        };
        let opts = match AnyConnectOptions::from_str(c.url()) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(server = %c.label(), error = %crate::error::Chain(&e), "cannot use the database server");
                return;
            }
        };
        let from = self.current_label();
        if let Some(writer) = self.writer.get() {
            writer.set_connect_options(opts.clone());
        }
        pool.set_connect_options(opts);
        if let Ok(mut g) = self.switched_at.lock() {
            *g = Some(Instant::now());
        }
        self.current.store(i, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(
            from = %from,
            to = %c.label(),
            target_session_attrs = self.hosts.attrs.as_str(),
            searched_ms = searched.as_millis() as u64,
            "the database server changed (failover): now using {}",
            c.label()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_errors_are_told_from_others() {
        assert!(is_failover_error(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(is_failover_error(&sqlx::Error::PoolTimedOut));
        assert!(!is_failover_error(&sqlx::Error::RowNotFound));
        assert!(!is_failover_error(&sqlx::Error::PoolClosed));
    }

    #[tokio::test]
    async fn no_server_at_all_is_a_clear_error_naming_each_host() {
        // Two loopback ports nobody listens on (bound, then released).
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .unwrap_or(1)
            })
            .collect();
        let url = format!(
            "postgresql://ca:s3cret@127.0.0.1:{},127.0.0.1:{}/ca?target_session_attrs=read-write",
            ports[0], ports[1]
        );
        let e = Failover::open(&url).await.unwrap_err().to_string();
        assert!(e.contains("no database server is writable"), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{}", ports[0])), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{}", ports[1])), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
