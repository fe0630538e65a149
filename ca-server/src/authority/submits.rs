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

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{status, unix, Authority, AuthorityError};
use crate::ca::csr::Csr;
use crate::ca::names;
use crate::storage::{AuditRecord, NewRequest};

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
    writing: Arc<AtomicBool>,
}

impl std::fmt::Debug for SubmitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitQueue").finish_non_exhaustive()
    }
}

impl SubmitQueue {
    fn is_empty(&self) -> bool {
        super::batch::lock(&self.pending).is_empty()
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
        super::batch::lock(&self.submits.pending).push(Pending {
            actor: actor.to_string(),
            certname: certname.to_string(),
            checked,
            reply,
        });
        self.kick_submit_writer();
        answer
            .await
            .unwrap_or_else(|_| Err(AuthorityError::Internal("the request writer ended".into())))
    }

    /// Runs the writer unless one runs (see [`super::run_writer`]); it loops while submissions are
    /// queued.
    fn kick_submit_writer(&self) {
        let queue = Arc::clone(&self.submits);
        let a = self.clone();
        super::run_writer(
            Arc::clone(&self.submits.writing),
            move || !queue.is_empty(),
            move || {
                let a = a.clone();
                async move {
                    let group = super::batch::take(&a.submits.pending);
                    if group.is_empty() {
                        return false;
                    }
                    a.submit_group(group).await;
                    true
                }
            },
        );
    }

    /// One transaction for `group`: every reply is sent after its commit, or with its error.
    async fn submit_group(&self, group: Vec<Pending>) {
        let (items, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|p| ((p.actor, p.certname, p.checked), p.reply))
            .unzip();
        match self.store_requests(items).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // Nothing of this transaction was stored: every submission in it gets the error.
                tracing::error!(error = %crate::error::Chain(&e), "certificate requests: a database transaction failed");
                let cause = crate::error::Shared(std::sync::Arc::new(e));
                for reply in replies {
                    let _ = reply.send(Err(AuthorityError::failed(
                        "a database transaction failed",
                        cause.clone(),
                    )));
                }
            }
        }
    }

    /// Stores the checked requests (actor, certname, request or refusal) in one transaction of four
    /// round trips, whatever their number: the begin; one read of what their names hold, with what
    /// the audit rows need; one write of the requests and the audit rows (one per request, stored or
    /// refused, in order); the commit. Returns each one's outcome, or the database error that ends
    /// the whole transaction.
    async fn store_requests(
        &self,
        items: Vec<(String, String, Result<Csr, AuthorityError>)>,
    ) -> Result<Vec<Result<Csr, AuthorityError>>, AuthorityError> {
        let mut tx = self.store.write_batch().await?;
        let duplicates_allowed = self.settings().allow_duplicate_certs;
        let mut held = {
            let names: Vec<&str> = if duplicates_allowed {
                Vec::new()
            } else {
                items
                    .iter()
                    .filter_map(|(_, _, c)| c.as_ref().ok().map(|c| c.common_name.as_str()))
                    .collect()
            };
            tx.name_states_before_audit(&names, items.len()).await?
        };
        // Decided in order: a name stored earlier in this transaction is held for those after it.
        let mut decided = Vec::with_capacity(items.len());
        for (actor, certname, checked) in items {
            let outcome = checked.and_then(|csr| match held.get(&csr.common_name) {
                Some(state) if !duplicates_allowed => Err(AuthorityError::Duplicate(format!(
                    "{} already has a {state} certificate; ignoring certificate request",
                    csr.common_name
                ))),
                _ => {
                    held.insert(csr.common_name.clone(), "requested");
                    Ok(csr)
                }
            });
            decided.push((actor, certname, outcome));
        }
        let mut statuses = Vec::with_capacity(decided.len());
        for (_, _, outcome) in &decided {
            if let Ok(csr) = outcome {
                statuses.push(status::request_status_json(&csr.common_name, csr)?);
            }
        }
        // The last request for a name replaces the earlier ones (duplicates allowed).
        let mut rows = Vec::with_capacity(statuses.len());
        let mut seen = HashSet::new();
        let stored: Vec<_> = decided
            .iter()
            .filter_map(|(actor, _, o)| o.as_ref().ok().map(|c| (actor, c)))
            .zip(&statuses)
            .collect();
        for ((actor, csr), json) in stored.into_iter().rev() {
            if seen.insert(csr.common_name.as_str()) {
                rows.push(NewRequest {
                    certname: &csr.common_name,
                    csr_der: &csr.der,
                    status_json: json,
                    by: actor,
                });
            }
        }
        rows.reverse();
        let now = unix(self.now());
        let texts: Vec<(String, Option<String>)> = decided
            .iter()
            .map(|(_, certname, o)| match o {
                Ok(csr) => (csr.common_name.clone(), None),
                Err(e) => (names::printable(certname), Some(e.to_string())),
            })
            .collect();
        let records: Vec<AuditRecord<'_>> = decided
            .iter()
            .zip(&texts)
            .map(|((actor, _, _), (name, detail))| match detail {
                None => AuditRecord::ok(now, actor, "submit").on(name),
                Some(d) => AuditRecord::refused(now, actor, "submit").on(name).detail(d),
            })
            .collect();
        tx.store_requests_and_commit(&rows, now, true, &records).await?;
        Ok(decided.into_iter().map(|(_, _, o)| o).collect())
    }
}
