//! Group commit of certificate requests: concurrent submissions share one write transaction, and so
//! one commit (one `fsync` of SQLite's WAL, one flush of PostgreSQL's log) instead of queueing for a
//! commit each.
//!
//! Parsing and the signature check happen in the request's own task, in parallel; what needs the
//! write lock (the duplicate check, the insert, the audit row) is queued here. Whichever submission
//! finds no writer running becomes it and takes everything queued, in order; the others wait for
//! their answer, given only once the transaction holding their request has committed. Within a
//! transaction the checks see the requests stored before them, so two submissions of one name in the
//! same transaction are one stored and one refused, exactly as in two transactions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Authority, AuthorityError};
use crate::ca::csr::Csr;
use crate::storage::WriteTx;

/// The most submissions one transaction takes.
const MAX_GROUP: usize = 256;

/// One submission waiting for the writer.
struct Pending {
    actor: String,
    certname: String,
    /// The parsed request, or why it is refused (audited in the transaction).
    checked: Result<Csr, AuthorityError>,
    reply: oneshot::Sender<Result<Csr, AuthorityError>>,
}

/// The submissions waiting for a transaction.
#[derive(Default)]
pub(crate) struct SubmitQueue {
    pending: Mutex<Vec<Pending>>,
    /// Whether a writer runs.
    writing: AtomicBool,
}

impl std::fmt::Debug for SubmitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitQueue").finish_non_exhaustive()
    }
}

impl SubmitQueue {
    fn take(&self) -> Vec<Pending> {
        match self.pending.lock() {
            Ok(mut v) => {
                let n = v.len().min(MAX_GROUP);
                v.drain(..n).collect()
            }
            Err(_) => Vec::new(),
        }
    }
    fn is_empty(&self) -> bool {
        self.pending.lock().map(|v| v.is_empty()).unwrap_or(true)
    }
}

impl Authority {
    /// Stores a checked request (or audits its refusal) in a transaction shared with the submissions
    /// queued beside it; answers once that transaction has committed.
    pub(super) async fn store_request_grouped(
        &self,
        actor: &str,
        certname: &str,
        checked: Result<Csr, AuthorityError>,
    ) -> Result<Csr, AuthorityError> {
        let (reply, answer) = oneshot::channel();
        if let Ok(mut q) = self.submits.pending.lock() {
            q.push(Pending {
                actor: actor.to_string(),
                certname: certname.to_string(),
                checked,
                reply,
            });
        }
        self.kick_submit_writer();
        answer
            .await
            .unwrap_or_else(|_| Err(AuthorityError::Internal("the request writer ended".into())))
    }

    /// Runs the writer unless one runs; it loops while submissions are queued.
    fn kick_submit_writer(&self) {
        if self.submits.writing.swap(true, Ordering::AcqRel) {
            return;
        }
        let a = self.clone();
        tokio::spawn(async move {
            /// Lets the next submission start a writer should this one end by a panic.
            struct Reset(Arc<SubmitQueue>);
            impl Drop for Reset {
                fn drop(&mut self) {
                    if std::thread::panicking() {
                        self.0.writing.store(false, Ordering::Release);
                    }
                }
            }
            let _reset = Reset(Arc::clone(&a.submits));
            loop {
                let group = a.submits.take();
                if !group.is_empty() {
                    a.submit_group(group).await;
                    continue;
                }
                a.submits.writing.store(false, Ordering::Release);
                // A submission queued between the last look and the store would wait: look again.
                if !a.submits.is_empty() && !a.submits.writing.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
        });
    }

    /// One transaction for `group`: every reply is sent after its commit, or with its error.
    async fn submit_group(&self, group: Vec<Pending>) {
        let mut answers = Vec::with_capacity(group.len());
        let outcome = async {
            let mut tx = self.store.write().await?;
            for p in group {
                match self
                    .store_one_request(&mut tx, &p.actor, &p.certname, p.checked)
                    .await
                {
                    Ok(result) => answers.push((p.reply, result)),
                    Err(e) => {
                        answers.push((p.reply, Err(AuthorityError::Internal(String::new()))));
                        return Err(e);
                    }
                }
            }
            tx.commit().await.map_err(AuthorityError::from)
        }
        .await;
        match outcome {
            Ok(()) => {
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // Nothing of this transaction was stored: every submission in it gets the error
                // (those not reached yet were dropped with the group, and get "writer ended").
                let msg = e.to_string();
                tracing::error!(error = %msg, "certificate requests: a database transaction failed");
                for (reply, _) in answers {
                    let _ = reply.send(Err(AuthorityError::Internal(msg.clone())));
                }
            }
        }
    }

    /// The request's own outcome (stored, or refused with an audit row), or the database error that
    /// ends the whole transaction.
    async fn store_one_request(
        &self,
        tx: &mut WriteTx,
        actor: &str,
        certname: &str,
        checked: Result<Csr, AuthorityError>,
    ) -> Result<Result<Csr, AuthorityError>, AuthorityError> {
        let refusal = match checked {
            Ok(csr) => match self.put_request(tx, actor, &csr).await? {
                None => return Ok(Ok(csr)),
                Some(duplicate) => duplicate,
            },
            Err(e) => e,
        };
        self.audit_refusal(tx, actor, "submit", certname, &refusal)
            .await?;
        Ok(Err(refusal))
    }
}
