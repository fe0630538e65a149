//! PostgreSQL: the batched writers' connections (signing rounds, CSR submission groups, serial
//! reservations), kept out of the write pool between their uses.
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

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};

use super::failover::{Failover, RECENTLY_TESTED};
use super::{noted, StoreError};

/// At most this many idle connections are kept (the batched writers use at most three at once:
/// a signing round, a group of CSR submissions and a reservation); one more is closed when it ends.
const KEEP: usize = 4;

/// The kept connections of a store, and the write pool that makes new ones.
pub(super) struct Kept {
    pool: AnyPool,
    failover: Arc<Failover>,
    idle: Mutex<Vec<Idle>>,
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
        })
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
        let generation = self.failover.generation();
        loop {
            let Some(mut idle) = self.idle().pop() else { break };
            if idle.generation != generation {
                // Opened on the server used before a failover.
                continue;
            }
            if idle.since.elapsed() >= RECENTLY_TESTED {
                if let Err(e) = idle.conn.ping().await {
                    tracing::debug!(error = %crate::error::Chain(&e), "a kept database connection is gone");
                    self.failover.suspect();
                    continue;
                }
            }
            return Ok(self.held(idle.conn, idle.generation));
        }
        let pooled: PoolConnection<Any> = noted(
            Some(&self.failover),
            self.pool.acquire().await.map_err(StoreError::from),
        )?;
        Ok(self.held(pooled.detach(), generation))
    }

    fn held(self: &Arc<Self>, conn: AnyConnection, generation: u64) -> KeptConn {
        KeptConn {
            conn: Some(conn),
            home: Arc::clone(self),
            generation,
            clean: false,
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
