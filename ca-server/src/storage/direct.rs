//! SQLite: the batched writers' transactions (CSR submission groups, signing rounds) on a
//! connection driven directly from the calling thread, kept outside any pool.
//!
//! sqlx runs each SQLite connection on a thread of its own and answers every statement's result and
//! every row as a message to the waiting task: on this kind of machine each message is a wake-up
//! and a thread switch that cost more than the statement (session 20 counted about 26 switches
//! per submission transaction, and measured the same transaction at 0.36-0.39 ms of CPU through
//! sqlx against 0.19-0.22 ms driven directly: BENCHMARKS.md, session 21). Here the transaction's
//! statements run on the thread that runs the transaction (the writers' thread, which exists for
//! them, see `authority::spawn_writer`), with no message and no switch.
//!
//! Only what those transactions need runs here (their reads, their writes and the commit, see
//! `Conn`); every other write transaction goes through sqlx's pool. Both kinds queue for the same
//! turn and the same cross-process lock before `BEGIN IMMEDIATE`, so neither ever meets the other's
//! write lock.
//!
//! A transaction dropped without a commit is rolled back at once, on the dropping thread, before
//! the writers' turn is released; a connection whose `ROLLBACK` fails is closed (which rolls back
//! too) and the next transaction opens another.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{OpenFlags, ToSql};

use super::StoreError;

/// How many prepared statements a connection keeps: the texts vary with the number of rows a
/// round or a group writes.
const STATEMENT_CACHE: usize = 128;

/// One connection for direct transactions: how it is opened, and where it waits between them.
#[derive(Debug)]
pub(super) struct Direct {
    path: PathBuf,
    /// Run on each connection opened (its `PRAGMA`s).
    pragmas: &'static str,
    slot: Mutex<Slot>,
}

enum Slot {
    /// Not opened yet, or closed after an error.
    Closed,
    /// Between transactions.
    Idle(rusqlite::Connection),
    /// In a transaction.
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

impl Direct {
    pub(super) fn new(path: PathBuf, pragmas: &'static str) -> Arc<Direct> {
        Arc::new(Direct {
            path,
            pragmas,
            slot: Mutex::new(Slot::Closed),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A transaction begun (`BEGIN IMMEDIATE`) on the connection, opened when there is none;
    /// `None` when another transaction has it (a writer that stopped waiting for its turn).
    pub(super) fn begin(self: &Arc<Self>) -> Result<Option<DirectTx>, StoreError> {
        let conn = {
            let mut slot = self.slot();
            match std::mem::replace(&mut *slot, Slot::Out) {
                Slot::Idle(c) => Some(c),
                Slot::Out => return Ok(None),
                Slot::Closed => None,
            }
        };
        let conn = match conn.map_or_else(|| self.open(), Ok) {
            Ok(c) => c,
            Err(e) => {
                *self.slot() = Slot::Closed;
                return Err(e);
            }
        };
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // No transaction began: the connection is as it was.
            *self.slot() = Slot::Idle(conn);
            return Err(e.into());
        }
        Ok(Some(DirectTx {
            conn: Some(conn),
            home: Arc::clone(self),
        }))
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.execute_batch(self.pragmas)?;
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(c)
    }

    /// Closes the connection if it is idle (the next transaction opens one); nothing when a
    /// transaction has it.
    pub(super) fn close(&self) {
        let mut slot = self.slot();
        if let Slot::Idle(_) = &*slot {
            *slot = Slot::Closed;
        }
    }
}

/// A write transaction on a direct connection (see the module's documentation).
pub(super) struct DirectTx {
    /// Until the commit or the drop.
    conn: Option<rusqlite::Connection>,
    home: Arc<Direct>,
}

impl DirectTx {
    pub(super) fn conn(&mut self) -> Result<&mut rusqlite::Connection, StoreError> {
        // There from creation until `commit` or `drop` consume the transaction.
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unsupported("the write transaction has ended".into()))
    }

    /// Commits; the connection goes back to its slot. When the `COMMIT` fails, the transaction is
    /// rolled back (see `drop`).
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        self.conn()?.execute_batch("COMMIT")?;
        if let Some(conn) = self.conn.take() {
            *self.home.slot() = Slot::Idle(conn);
        }
        Ok(())
    }
}

impl Drop for DirectTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let next = match conn.execute_batch("ROLLBACK") {
            Ok(()) => Slot::Idle(conn),
            Err(e) => {
                // A failed `COMMIT` may have ended the transaction already ("no transaction is
                // active"). Whatever the cause, a closed connection holds no transaction and no
                // write lock; the next transaction opens another.
                tracing::debug!(error = %crate::error::Chain(&e), "write transaction: rollback; the connection is closed");
                drop(conn);
                Slot::Closed
            }
        };
        *self.home.slot() = next;
    }
}

/// A statement argument, for either driver. A `NULL` keeps its type (PostgreSQL types each
/// parameter).
#[derive(Debug, Clone)]
pub(super) enum Val<'q> {
    Int(Option<i64>),
    Text(Option<std::borrow::Cow<'q, str>>),
    Blob(&'q [u8]),
}

impl<'q> Val<'q> {
    pub(super) fn text(s: &'q str) -> Val<'q> {
        Val::Text(Some(std::borrow::Cow::Borrowed(s)))
    }
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}

impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}

impl<'q> From<&'q str> for Val<'q> {
    fn from(v: &'q str) -> Self {
        Val::text(v)
    }
}

impl<'q> From<Option<&'q str>> for Val<'q> {
    fn from(v: Option<&'q str>) -> Self {
        Val::Text(v.map(std::borrow::Cow::Borrowed))
    }
}

impl From<String> for Val<'_> {
    fn from(v: String) -> Self {
        Val::Text(Some(std::borrow::Cow::Owned(v)))
    }
}

impl<'q> From<&'q [u8]> for Val<'q> {
    fn from(v: &'q [u8]) -> Self {
        Val::Blob(v)
    }
}

impl ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Int(Some(i)) => ValueRef::Integer(*i),
            Val::Text(Some(s)) => ValueRef::Text(s.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
            Val::Int(None) | Val::Text(None) => ValueRef::Null,
        }))
    }
}

/// Prepares `sql` (cached) and binds `args` to its `$N` parameters: `$N` takes `args[N - 1]`,
/// wherever and however often it appears in the text.
///
/// The text is prepared with each `$N` written `?N`, SQLite's numbered parameter, whose index is
/// `N` itself: a `$N` is a named parameter to SQLite, numbered in the order of first appearance, and
/// finding each one's name (`sqlite3_bind_parameter_name`) walks the list of names, which made the
/// binding quadratic in the number of parameters (a round of 20 certificates has about 400).
pub(super) fn prepare<'c>(
    c: &'c rusqlite::Connection,
    sql: &str,
    args: &[Val<'_>],
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    let mut st = c.prepare_cached(&numbered(sql))?;
    let count = st.parameter_count();
    if count > args.len() {
        return Err(StoreError::Corrupt(format!(
            "statement parameter {count} has no argument ({} given)",
            args.len()
        )));
    }
    for (i, arg) in args.iter().enumerate().take(count) {
        st.raw_bind_parameter(i + 1, arg)?;
    }
    Ok(st)
}

/// `sql` with each `$N` parameter written `?N` (none inside a quoted string or name, or a comment).
fn numbered(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    // The closing character of the quoted text or comment being copied, if any.
    let mut inside: Option<&str> = None;
    // The previous character, when it was outside quoted text and comments.
    let mut prev: Option<char> = None;
    while let Some(ch) = chars.next() {
        let after_name = prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$');
        prev = inside.is_none().then_some(ch);
        out.push(ch);
        match inside {
            Some("\n") if ch == '\n' => inside = None,
            Some("*/") if ch == '*' && chars.peek() == Some(&'/') => {
                out.push('/');
                chars.next();
                inside = None;
            }
            Some(close) if close.len() == 1 && close.starts_with(ch) => inside = None,
            Some(_) => {}
            None => match ch {
                '\'' => inside = Some("'"),
                '"' => inside = Some("\""),
                '`' => inside = Some("`"),
                '[' => inside = Some("]"),
                '-' if chars.peek() == Some(&'-') => inside = Some("\n"),
                '/' if chars.peek() == Some(&'*') => {
                    out.push('*');
                    chars.next();
                    inside = Some("*/");
                }
                // Not within a name: SQLite and PostgreSQL allow `$` in one after its first character.
                '$' if chars.peek().is_some_and(char::is_ascii_digit) && !after_name => {
                    out.pop();
                    out.push('?');
                }
                _ => {}
            },
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `e` is a unique or primary key constraint's refusal.
pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_parameters_are_numbered_outside_quotes_and_comments() {
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
        assert_eq!(
            numbered("SELECT $2, $10, $1 FROM t WHERE a = $2"),
            "SELECT ?2, ?10, ?1 FROM t WHERE a = ?2"
        );
        assert_eq!(
            numbered("SELECT '$1', 'it''s $2', \"$3\" -- $4\n, $5 /* $6 */ , $7"),
            "SELECT '$1', 'it''s $2', \"$3\" -- $4\n, ?5 /* $6 */ , ?7"
        );
        assert_eq!(numbered("SELECT $a, $"), "SELECT $a, $");
        assert_eq!(numbered("SELECT a$1, ($1)"), "SELECT a$1, (?1)");
    }

    #[test]
    fn a_parameter_takes_the_argument_its_number_names_and_a_missing_one_is_an_error() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let args = [Val::from(10_i64), Val::from("two"), Val::from(30_i64)];
        let mut st = prepare(&c, "SELECT $3, $2, $1 + $3, '$2'", &args).unwrap();
        let row: (i64, String, i64, String) = st
            .raw_query()
            .next()
            .unwrap()
            .map(|r| {
                (
                    r.get(0).unwrap(),
                    r.get(1).unwrap(),
                    r.get(2).unwrap(),
                    r.get(3).unwrap(),
                )
            })
            .unwrap();
        assert_eq!(row, (30, "two".to_string(), 40, "$2".to_string()));
        drop(st);
        let e = prepare(&c, "SELECT $4", &args).err().unwrap();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    }
}
