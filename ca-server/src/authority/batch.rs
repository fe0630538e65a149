//! Issuance bound by the signature alone: requests are checked and given serials in one short write
//! transaction, signed in parallel on a pool sized to the cores with no lock held, and stored in a
//! second transaction. Concurrent `sign` calls queue up and are served as one batch by a drain task,
//! so under load many certificates share each pair of commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Semaphore};

use super::{status, unix, Authority, AuthorityError, Issued, SignRequest};
use crate::ca::csr;
use crate::ca::issue::{self, Validity};
use crate::policy::{signing, Permit};
use crate::storage::{AuditRecord, CertRow};

/// One signing asked for.
pub(crate) struct Job {
    pub actor: String,
    pub certname: String,
    pub req: SignRequest,
}

type Reply = oneshot::Sender<Result<Issued, AuthorityError>>;

/// Signings waiting for the drain task.
pub(crate) struct Queue {
    jobs: Mutex<Vec<(Job, Reply)>>,
    draining: AtomicBool,
    /// Batches under way at once (see `drain`).
    in_flight: Arc<Semaphore>,
}

/// Batches under way at once: one signing while the next reserves its serials and the previous one
/// stores its certificates. Two requests racing for the same certname in overlapping batches are
/// settled when the second stores: its request is gone, so it is answered as a second `sign` would be.
const BATCHES_IN_FLIGHT: usize = 3;

impl Default for Queue {
    fn default() -> Self {
        Queue {
            jobs: Mutex::default(),
            draining: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(BATCHES_IN_FLIGHT)),
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

/// The largest batch: bounds a transaction's size and a request's wait.
const MAX_BATCH: usize = 256;

struct Ready {
    index: usize,
    serial: u64,
    permit: Permit,
    spki: Vec<u8>,
    csr_der: Vec<u8>,
    validity: Validity,
}

impl Authority {
    /// Queues a signing and waits for it; a drain task (spawned, so a cancelled request cannot stall
    /// others) serves the queue in batches.
    pub(crate) async fn sign_queued(&self, job: Job) -> Result<Issued, AuthorityError> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut q) = self.queue.jobs.lock() {
            q.push((job, tx));
        }
        if !self.queue.draining.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::spawn(async move { me.drain().await });
        }
        rx.await
            .map_err(|_| AuthorityError::Internal("the signing task ended".into()))?
    }

    async fn drain(&self) {
        // Should this task ever end abnormally, the next `sign` must start a new one.
        struct Reset<'a>(&'a AtomicBool);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(false, Ordering::Release);
                }
            }
        }
        let _reset = Reset(&self.queue.draining);
        loop {
            let batch: Vec<(Job, Reply)> = match self.queue.jobs.lock() {
                Ok(mut q) => {
                    let n = q.len().min(MAX_BATCH);
                    q.drain(..n).collect()
                }
                Err(_) => Vec::new(),
            };
            if batch.is_empty() {
                self.queue.draining.store(false, Ordering::Release);
                // A job queued between the check and the store would wait forever: look once more.
                let more = self.queue.jobs.lock().map(|q| !q.is_empty()).unwrap_or(false);
                if more && !self.queue.draining.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
            // Batches overlap: while one is being signed, the next one's transaction checks its
            // requests and reserves its serials, and the previous one's stores its certificates, so
            // the cores never wait for a commit.
            let Ok(slot) = Arc::clone(&self.queue.in_flight).acquire_owned().await else {
                return;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.serve_batch(batch).await;
                drop(slot);
            });
        }
    }

    async fn serve_batch(&self, batch: Vec<(Job, Reply)>) {
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        let results = match self.issue_batch(&jobs).await {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "signing batch failed");
                jobs.iter()
                    .map(|_| Err(AuthorityError::Internal(msg.clone())))
                    .collect()
            }
        };
        for (reply, res) in replies.into_iter().zip(results) {
            let _ = reply.send(res);
        }
    }

    /// Signs every job that the policy allows; refusals are audited. One result per job, in order.
    pub(crate) async fn issue_batch(
        &self,
        jobs: &[Job],
    ) -> Result<Vec<Result<Issued, AuthorityError>>, AuthorityError> {
        let started = std::time::Instant::now();
        let mut results: Vec<Option<Result<Issued, AuthorityError>>> = jobs.iter().map(|_| None).collect();
        let mut ready = Vec::new();
        // 1. Check and reserve serials (a short transaction; refusals audited in it).
        let mut tx = self.store.write().await?;
        let mut taken = std::collections::BTreeSet::new();
        for (index, job) in jobs.iter().enumerate() {
            let row = if taken.contains(&job.certname) {
                None
            } else {
                tx.request(&job.certname).await?
            };
            let outcome = match row {
                None => {
                    // Twice in one batch: the first is being signed.
                    let has_cert = taken.contains(&job.certname)
                        || tx.current_certificate(&job.certname).await?.is_some();
                    Err(AuthorityError::NoRequest {
                        certname: job.certname.clone(),
                        has_cert,
                    })
                }
                Some(row) => {
                    let parsed = csr::parse_der(&row.csr_der)?;
                    match signing::check(&parsed, &self.settings.signing, job.req.options) {
                        Err(e) => Err(e.into()),
                        Ok(permit) => {
                            let ttl = self.ttl_for(&parsed, job.req.ttl);
                            match Validity::from_now(self.now(), ttl) {
                                Err(e) => Err(AuthorityError::Invalid(e.to_string())),
                                Ok(validity) => {
                                    let serial = tx.next_serial().await?;
                                    taken.insert(job.certname.clone());
                                    ready.push(Ready {
                                        index,
                                        serial,
                                        permit,
                                        spki: parsed.spki_der,
                                        csr_der: row.csr_der,
                                        validity,
                                    });
                                    continue;
                                }
                            }
                        }
                    }
                }
            };
            if let Err(e) = &outcome {
                let detail = e.to_string();
                let name = crate::ca::names::printable(&job.certname);
                let rec = AuditRecord::refused(unix(self.now()), &job.actor, "sign")
                    .on(&name)
                    .detail(&detail);
                tx.audit(&rec).await?;
            }
            results[index] = Some(outcome);
        }
        tx.commit().await?;

        // 2. Sign in parallel, no lock held: one blocking task per core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
        let chunk = ready.len().div_ceil(cores).max(1);
        let mut tasks = Vec::new();
        let mut iter = ready.into_iter();
        loop {
            let part: Vec<Ready> = iter.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let signer = Arc::clone(&self.signer);
            tasks.push(tokio::task::spawn_blocking(move || {
                part.into_iter()
                    .map(|r| {
                        let der = issue::issue_leaf(&signer, &r.spki, &r.permit, r.serial, r.validity);
                        (r, der)
                    })
                    .collect::<Vec<_>>()
            }));
        }
        let mut signed = Vec::new();
        for t in tasks {
            signed.extend(
                t.await
                    .map_err(|e| AuthorityError::Internal(format!("signing task failed: {e}")))?,
            );
        }

        // 3. Store what was signed, if its request is still the one that was checked.
        let mut tx = self.store.write().await?;
        let mut issued = Vec::new();
        for (r, der) in signed {
            let job = &jobs[r.index];
            let der = match der {
                Ok(d) => d,
                Err(e) => {
                    results[r.index] = Some(Err(AuthorityError::Ca(e)));
                    continue;
                }
            };
            let still = tx
                .request(&job.certname)
                .await?
                .is_some_and(|row| row.csr_der == r.csr_der);
            if !still {
                results[r.index] = Some(Err(AuthorityError::NoRequest {
                    certname: job.certname.clone(),
                    has_cert: true,
                }));
                continue;
            }
            let now = unix(self.now());
            let row = CertRow {
                serial: r.serial,
                certname: job.certname.clone(),
                der: der.clone(),
                not_before: unix(r.validity.not_before),
                not_after: unix(r.validity.not_after),
                revoked: None,
            };
            tx.insert_certificate(&row, &status::certificate_status_json(&row)?, now, &job.actor)
                .await?;
            tx.delete_request(&job.certname).await?;
            tx.audit(
                &AuditRecord::ok(now, &job.actor, "sign")
                    .on(&job.certname)
                    .serial(r.serial),
            )
            .await?;
            issued.push((
                r.index,
                Issued {
                    serial: r.serial,
                    der,
                },
            ));
        }
        tx.commit().await?;
        for (index, i) in issued {
            self.sign_latency.observe(started.elapsed());
            results[index] = Some(Ok(i));
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(AuthorityError::Internal("no result".into()))))
            .collect())
    }
}
