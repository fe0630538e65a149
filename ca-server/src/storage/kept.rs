//! SQLite: write transactions on a connection the store keeps, outside any pool, with their `BEGIN`
//! and `COMMIT` sent together with a statement of theirs where they can.
//!
//! A statement on SQLite is a round trip to the connection's own thread (sqlx runs each connection
//! on one), and on this kind of machine each round trip is two thread switches that cost more than
//! the statement. Through sqlx's pool and `Transaction`, a write transaction of one read and one
//! write took five: `BEGIN IMMEDIATE`, the read, the write, `COMMIT`, and the ping sqlx sends to every
//! connection returned to its pool. Here the connection never goes back to a pool, the `BEGIN` goes
//! with the transaction's first statement when that statement can carry it
//! ([`KeptTx::begin_in_statement`]) and the `COMMIT` with its last write when that write answers
//! nothing ([`COMMIT_AFTER`]): two round trips for the same transaction.
//!
//! A transaction dropped without a commit is rolled back by a task that keeps the writers' turn
//! (and the cross-process writer lock) until the `ROLLBACK` is done; without a runtime to run it,
//! the connection is closed, which rolls the transaction back too.

use std::sync::{Arc, Mutex};

use sqlx::any::AnyConnectOptions;
use sqlx::AnyConnection;
use sqlx::{ConnectOptions, Connection, Executor};

use super::{Queued, StoreError};

/// The statement that starts a write transaction: the database's write lock, taken at once.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// [`BEGIN`] sent ahead of another statement, in the same round trip.
const BEGIN_BEFORE: &str = "BEGIN IMMEDIATE; ";

/// `COMMIT` sent after a transaction's last write, in the same round trip.
pub(super) const COMMIT_AFTER: &str = "; COMMIT";

/// One kept connection: how it is opened, and where it waits between transactions.
#[derive(Debug)]
pub(super) struct Kept {
    opts: AnyConnectOptions,
    /// Run on each connection opened (its `PRAGMA`s).
    pragmas: &'static str,
    slot: Mutex<Slot>,
}

enum Slot {
    /// Not opened yet, or closed after an error.
    Closed,
    /// Between transactions.
    Idle(AnyConnection),
    /// In a transaction (or being rolled back).
    Out,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Slot::Closed => "Closed",
            Slot::Idle(_) => "Idle",
            Slot::Out => "Out",
        })
    }
}

impl Kept {
    pub(super) fn new(opts: AnyConnectOptions, pragmas: &'static str) -> Arc<Kept> {
        Arc::new(Kept {
            opts,
            pragmas,
            slot: Mutex::new(Slot::Closed),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection for a transaction (opened, from the calling thread, when there is none);
    /// `None` when another transaction has it (a writer that stopped waiting for its turn).
    pub(super) async fn take(self: &Arc<Self>) -> Result<Option<AnyConnection>, StoreError> {
        {
            let mut slot = self.slot();
            match std::mem::replace(&mut *slot, Slot::Out) {
                Slot::Idle(c) => return Ok(Some(c)),
                Slot::Out => return Ok(None),
                Slot::Closed => {}
            }
        }
        match self.open().await {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                *self.slot() = Slot::Closed;
                Err(e)
            }
        }
    }

    async fn open(&self) -> Result<AnyConnection, StoreError> {
        let mut c = self.opts.connect().await?;
        c.execute(self.pragmas).await?;
        Ok(c)
    }

    /// Back between transactions.
    pub(super) fn put(&self, c: AnyConnection) {
        *self.slot() = Slot::Idle(c);
    }

    /// Closes the connection if it is idle (the next transaction opens one from its own thread);
    /// nothing when a transaction has it.
    pub(super) async fn close(&self) -> Result<(), StoreError> {
        let idle = {
            let mut slot = self.slot();
            match std::mem::replace(&mut *slot, Slot::Closed) {
                Slot::Idle(c) => Some(c),
                Slot::Out => {
                    *slot = Slot::Out;
                    None
                }
                Slot::Closed => None,
            }
        };
        if let Some(c) = idle {
            c.close().await?;
        }
        Ok(())
    }

    /// A transaction on `conn` (taken from this slot), its `BEGIN` not sent yet.
    pub(super) fn transaction(self: &Arc<Self>, conn: AnyConnection, queued: Queued) -> KeptTx {
        KeptTx {
            conn: Some(conn),
            kept: Arc::clone(self),
            state: State::NotBegun,
            queued,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet: nothing to roll back.
    NotBegun,
    /// `BEGIN` sent (or on its way with a statement): rolled back unless committed.
    Begun,
}

/// A write transaction on a kept connection (see the module's documentation).
pub(super) struct KeptTx {
    /// Until the commit or the drop.
    conn: Option<AnyConnection>,
    kept: Arc<Kept>,
    state: State,
    /// This process's turn to write and the writer lock, released once the transaction has ended.
    queued: Queued,
}

impl KeptTx {
    fn conn_mut(&mut self) -> Result<&mut AnyConnection, StoreError> {
        // There from creation until `commit` or `drop` consume the transaction.
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unsupported("the write transaction has ended".into()))
    }

    /// The connection, the transaction begun on it first when it has not been.
    pub(super) async fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if self.state == State::NotBegun {
            self.state = State::Begun;
            self.conn_mut()?.execute(BEGIN).await?;
        }
        self.conn_mut()
    }

    /// For a statement that can be preceded by others in one round trip: what to put before it
    /// (`BEGIN IMMEDIATE; ` when the transaction has not begun), and the connection. The
    /// transaction counts as begun from now on, whatever becomes of the statement.
    pub(super) fn begin_in_statement(&mut self) -> Result<(&'static str, &mut AnyConnection), StoreError> {
        let prefix = match self.state {
            State::NotBegun => BEGIN_BEFORE,
            State::Begun => "",
        };
        self.state = State::Begun;
        Ok((prefix, self.conn_mut()?))
    }

    /// Commits: `COMMIT` on its own, or nothing more when `sent` (the transaction's last statement
    /// carried the `COMMIT`, see [`COMMIT_AFTER`], and succeeded). The connection goes back to its
    /// slot.
    pub(super) async fn commit(mut self, sent: bool) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Err(StoreError::Unsupported("the write transaction has ended".into()));
        };
        if self.state == State::Begun && !sent {
            if let Err(e) = conn.execute("COMMIT").await {
                // Not committed: rolled back (see `drop`) before the connection is used again.
                self.conn = Some(conn);
                return Err(e.into());
            }
        }
        self.kept.put(conn);
        Ok(())
    }
}

impl Drop for KeptTx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.state == State::NotBegun {
            self.kept.put(conn);
            return;
        }
        let kept = Arc::clone(&self.kept);
        let queued = std::mem::take(&mut self.queued);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = conn.execute("ROLLBACK").await {
                        // Most often "no transaction is active": a failed `BEGIN` or `COMMIT` ended
                        // it already. Whatever the cause, a closed connection holds no transaction
                        // (and no write lock); the next transaction opens another.
                        tracing::debug!(error = %crate::error::Chain(&e), "write transaction: rollback; the connection is closed");
                        if let Err(e) = conn.close().await {
                            tracing::debug!(error = %crate::error::Chain(&e), "write transaction: closing the connection");
                        }
                        *kept.slot() = Slot::Closed;
                    } else {
                        kept.put(conn);
                    }
                    drop(queued);
                });
            }
            Err(_) => {
                // Closing the connection rolls the transaction back.
                *kept.slot() = Slot::Closed;
                drop(conn);
            }
        }
    }
}
