//! PostgreSQL: the write transactions' connections (the signing rounds', the CSR submission
//! groups' and every other writer's) and the serial reservations', kept out of the write pool
//! between their uses; and the time limit of every statement (see [`Limit`]).
//!
//! sqlx pings every connection returned to its pool before it takes it back: one more round trip to
//! PostgreSQL (a wake-up of another process on the cores the signatures fill) after each write
//! transaction and each reservation, about a tenth of the writers' thread in a profile of signing
//! on PostgreSQL. These connections come from the write pool once (its hooks set them up and check
//! the server's role) and are then detached from it: one that ends its use cleanly (a committed
//! transaction, statements that all succeeded) is kept for the next, untested when it comes back
//! within [`RECENTLY_TESTED`] as the pool does for its own (its next statement's failure is noted
//! like any other), pinged first when it was idle longer. Any other end closes it: a transaction
//! neither committed nor rolled back dies with its connection, and with it the CA's write lock (the
//! server rolls back a transaction whose client is gone). Connections opened before a failover
//! switched servers are closed, not used again.
//!
//! Every write transaction runs on such a connection (the other writers' too, see
//! [`super::Store::write`]), and each of its statements, its `BEGIN` (the wait for the CA's write
//! lock) and its `COMMIT` included, may take at most [`Limit`]: sqlx sets no TCP keepalive on its
//! sockets and bounds no statement, so a statement in flight to a primary that vanished without
//! closing its connections (power lost, packets dropped) would wait for the kernel to give up
//! retransmitting, about 15 minutes, holding up the writers queued behind it (the signing
//! pipeline, the revocations). Past the limit the statement fails, its connection is closed (its
//! transaction with it, should the server still be there), and a re-probe looks for the server that
//! now qualifies.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::failover::{Failover, RECENTLY_TESTED};
use super::{noted, StoreError};

/// At most this many idle connections are kept (the batched writers use at most three at once:
/// a signing round, a group of CSR submissions and a reservation); one more is closed when it ends.
const KEEP: usize = 4;

/// At most this many connections in use at once: beyond, a writer waits here (at most
/// [`PERMIT_WAIT`]) instead of holding a connection while it waits for the server's write lock.
const IN_USE: usize = 4;

/// The longest wait for a place among [`IN_USE`], and for the check of a connection idle for
/// [`RECENTLY_TESTED`] or longer (the write pool's acquire timeout is the same).
const PERMIT_WAIT: Duration = Duration::from_secs(5);

/// How long one statement may take by default (see [`Limit`]): far beyond any of the CA's
/// statements, and beyond the CA's longest hold of its write lock outside an import.
pub(super) const STATEMENT_LIMIT: Duration = Duration::from_secs(60);

/// How long each statement may take on PostgreSQL (a write transaction's, its `BEGIN` and `COMMIT`
/// included, a reservation's, a read's: `limits.database-statement-timeout`); none on SQLite (a
/// local file). A statement past it fails with a timed-out I/O error, its connection is closed, and
/// the failover looks for the server that qualifies now.
#[derive(Clone, Default)]
pub(super) struct Limit(Option<(Duration, Arc<Failover>)>);

/// `fut`, failed with a timed-out I/O error when it takes longer than `limit`.
pub(super) async fn within<T, E: From<sqlx::Error>>(
    limit: Limit,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Some((d, failover)) = limit.0 else {
        return fut.await;
    };
    match tokio::time::timeout(d, fut).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(
                limit_s = d.as_secs_f64(),
                "the database did not answer a statement in time: its connection is closed"
            );
            failover.suspect();
            Err(E::from(timed_out(d)))
        }
    }
}

/// The error of a statement that took longer than `d`.
fn timed_out(d: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer from the database within {} s (the server gone, or the CA's write lock held that long)",
            d.as_secs()
        ),
    ))
}

/// The kept connections of a store, and the write pool that makes new ones.
pub(super) struct Kept {
    pool: AnyPool,
    failover: Arc<Failover>,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    limit: Mutex<Duration>,
}

struct Idle {
    conn: AnyConnection,
    /// The failover's switch count when the connection was made.
    generation: u64,
    since: Instant,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").finish_non_exhaustive()
    }
}

impl Kept {
    pub(super) fn new(pool: AnyPool, failover: Arc<Failover>) -> Arc<Kept> {
        Arc::new(Kept {
            pool,
            failover,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(IN_USE)),
            limit: Mutex::new(STATEMENT_LIMIT),
        })
    }

    /// The limit of each statement of a write transaction from now on.
    pub(super) fn set_limit(&self, d: Duration) {
        *self
            .limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = d;
    }

    /// The limit of each statement of a write transaction.
    pub(super) fn limit(&self) -> Limit {
        Limit(Some((self.limit_duration(), Arc::clone(&self.failover))))
    }

    fn limit_duration(&self) -> Duration {
        *self
            .limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A list of connections, whole at every instant.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection: the one kept last (when still usable), else a new one from the write pool.
    /// Returned unclean: see [`KeptConn::done`].
    pub(super) async fn take(self: &Arc<Self>) -> Result<KeptConn, StoreError> {
        let permit = tokio::time::timeout(PERMIT_WAIT, Arc::clone(&self.permits).acquire_owned()).await;
        let Ok(Ok(permit)) = permit else {
            return noted(Some(&self.failover), Err(sqlx::Error::PoolTimedOut.into()));
        };
        let generation = self.failover.generation();
        loop {
            let Some(mut idle) = self.idle().pop() else { break };
            if idle.generation != generation {
                // Opened on the server used before a failover.
                continue;
            }
            if idle.since.elapsed() >= RECENTLY_TESTED {
                let wait = self.limit_duration().min(PERMIT_WAIT);
                let checked = tokio::time::timeout(wait, idle.conn.ping()).await;
                if !matches!(checked, Ok(Ok(()))) {
                    // The others are on the same server: not one more wait for each.
                    tracing::debug!("a kept database connection no longer answers: all are closed");
                    self.idle().clear();
                    self.failover.suspect();
                    continue;
                }
            }
            return Ok(self.held(idle.conn, idle.generation, permit));
        }
        // A re-probe under way (this connection's server may be gone): connect where it leads.
        self.failover.settled(PERMIT_WAIT).await;
        let pooled: PoolConnection<Any> = noted(
            Some(&self.failover),
            self.pool.acquire().await.map_err(StoreError::from),
        )?;
        Ok(self.held(pooled.detach(), generation, permit))
    }

    fn held(
        self: &Arc<Self>,
        conn: AnyConnection,
        generation: u64,
        permit: OwnedSemaphorePermit,
    ) -> KeptConn {
        KeptConn {
            conn: Some(conn),
            home: Arc::clone(self),
            generation,
            clean: false,
            _permit: permit,
        }
    }

    /// Closes the idle connections (the store closes, or its write connections are opened again
    /// from another thread).
    pub(super) async fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.idle());
        for i in idle {
            let _ = i.conn.close().await;
        }
    }
}

/// A connection taken from [`Kept`]: back to it when dropped clean, closed otherwise.
pub(super) struct KeptConn {
    conn: Option<AnyConnection>,
    home: Arc<Kept>,
    generation: u64,
    clean: bool,
    /// Its place among the connections in use, given back when it ends.
    _permit: OwnedSemaphorePermit,
}

impl KeptConn {
    /// The connection, marked unclean until [`KeptConn::done`].
    pub(super) fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        self.clean = false;
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unsupported("the connection was given back".into()))
    }

    /// Its use ended cleanly (no transaction open, no statement under way): it may be kept.
    pub(super) fn done(&mut self) {
        self.clean = true;
    }
}

impl Drop for KeptConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.clean {
            // Closed without a word (no runtime to wait on here): the server rolls back whatever
            // was under way and releases its locks when it sees the socket closed.
            return;
        }
        let mut idle = self.home.idle();
        if idle.len() < KEEP {
            idle.push(Idle {
                conn,
                generation: self.generation,
                since: Instant::now(),
            });
        }
    }
}
