//! Issuance bound by the signature alone, as a pipeline of two stages that feed each other:
//!
//! - **database**: one task, one write transaction at a time, in which it stores the certificates
//!   signed since its last transaction (acknowledged once committed) and checks the queued signings
//!   against the policy and reserves their serials (refusals audited in it). Under load, every
//!   transaction carries many certificates both ways;
//! - **sign**: one blocking task per core takes reserved certificates one after the other and signs
//!   them, with no lock held (no hand-over between two signatures).
//!
//! The cores keep signing while the database task waits for its commits. A round that only reserves
//! does not wait for the disk at its commit (the durable commit that stores the certificates, and
//! answers their requests, makes it durable with it). A crash between the reservation and the storing
//! leaves a gap in the serials, or, when the reservation was lost with the crash, frees those serials
//! again: no certificate with them was stored or handed out, so no two certificates anyone holds
//! share a serial.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::{status, unix, Authority, AuthorityError, Issued, SignRequest};
use crate::ca::csr;
use crate::ca::issue::{self, Validity};
use crate::ca::CaError;
use crate::policy::{signing, Permit};
use crate::storage::{AuditRecord, CertRow, WriteTx};

/// One signing asked for.
pub(crate) struct Job {
    pub actor: String,
    pub certname: String,
    pub req: SignRequest,
}

type Reply = oneshot::Sender<Result<Issued, AuthorityError>>;

/// A reserved job and its signature (or why there is none).
type Signed = (Reserved, Result<Vec<u8>, CaError>);

/// What the policy allowed for a job, with its serial.
struct Checked {
    serial: u64,
    permit: Permit,
    spki: Vec<u8>,
    csr_der: Vec<u8>,
    validity: Validity,
}

/// A job with its serial, waiting for or done with its signature.
struct Reserved {
    job: Job,
    reply: Reply,
    queued: Instant,
    c: Checked,
}

/// The work between the stages.
pub(crate) struct Queue {
    /// Waiting to be reserved.
    jobs: Mutex<Vec<(Job, Reply, Instant)>>,
    /// Whether the database task runs.
    writing: Arc<AtomicBool>,
    /// Reserved, waiting for a signer.
    to_sign: Mutex<VecDeque<Reserved>>,
    /// Signing tasks running, at most `cores`.
    signers: AtomicUsize,
    cores: usize,
    /// Signed, waiting to be stored.
    signed: Mutex<Vec<Signed>>,
}

impl Default for Queue {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
        Queue {
            jobs: Mutex::default(),
            writing: Arc::default(),
            to_sign: Mutex::default(),
            signers: AtomicUsize::new(0),
            cores,
            signed: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

/// The longest a database round waits for the previous one's certificates to be signed.
const MAX_ROUND_WAIT: std::time::Duration = std::time::Duration::from_millis(25);

/// The most signings (or CSR submissions, see `submits.rs`) one transaction takes: bounds a
/// transaction's size and a request's wait.
const MAX_BATCH: usize = 256;

impl Queue {
    /// Whether every signer has a certificate waiting after its current one.
    fn signers_busy(&self) -> bool {
        lock(&self.to_sign).len() >= self.cores
    }
    fn has_work(&self) -> bool {
        !lock(&self.jobs).is_empty() || !lock(&self.signed).is_empty()
    }
}

/// A queue's lock. The queues are plain lists, whole at every instant, so a thread that panicked
/// holding one left nothing half-done: its items are taken as they are (never silently dropped, as
/// treating the poisoned lock as empty would, losing a signed certificate).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Up to [`MAX_BATCH`] items from the front of `m`.
pub(super) fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    let mut v = lock(m);
    let n = v.len().min(MAX_BATCH);
    v.drain(..n).collect()
}

/// One database round's work, each item with the reply it owes.
#[derive(Default)]
struct Round {
    /// Not looked at yet.
    signed: Vec<Signed>,
    jobs: Vec<(Job, Reply, Instant)>,
    /// Done, answered once the transaction commits.
    answers: Vec<(Reply, Result<Issued, AuthorityError>, Option<Instant>)>,
    reserved: Vec<Reserved>,
}

impl Round {
    /// The transaction failed: every item gets the error.
    fn fail(self, msg: &str) {
        let err = || Err(AuthorityError::Internal(msg.to_string()));
        let replies = self
            .signed
            .into_iter()
            .map(|(r, _)| r.reply)
            .chain(self.jobs.into_iter().map(|(_, r, _)| r))
            .chain(self.answers.into_iter().map(|(r, _, _)| r))
            .chain(self.reserved.into_iter().map(|r| r.reply));
        for reply in replies {
            let _ = reply.send(err());
        }
    }
}

impl Authority {
    /// Queues signings and waits for them (each its own result, in order).
    pub(crate) async fn sign_queued(&self, jobs: Vec<Job>) -> Vec<Result<Issued, AuthorityError>> {
        let now = Instant::now();
        let mut waits = Vec::with_capacity(jobs.len());
        {
            let mut q = lock(&self.queue.jobs);
            for job in jobs {
                let (tx, rx) = oneshot::channel();
                q.push((job, tx, now));
                waits.push(rx);
            }
        }
        self.kick_database();
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            out.push(
                rx.await
                    .unwrap_or_else(|_| Err(AuthorityError::Internal("the signing task ended".into()))),
            );
        }
        out
    }

    /// Runs the database task unless it runs already (see [`super::run_writer`]).
    fn kick_database(&self) {
        let queue = Arc::clone(&self.queue);
        let a = self.clone();
        super::run_writer(
            Arc::clone(&self.queue.writing),
            move || queue.has_work(),
            move || {
                let a = a.clone();
                async move {
                    let started = Instant::now();
                    if !a.database_round().await {
                        return false;
                    }
                    // While the signers have work queued, waiting costs no signature: the next round
                    // then carries more certificates, and fewer commits take CPU from the signatures.
                    while started.elapsed() < MAX_ROUND_WAIT && a.queue.signers_busy() {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    true
                }
            },
        );
    }

    /// One transaction: store what was signed, reserve what was queued. Returns whether there was work.
    async fn database_round(&self) -> bool {
        let mut round = Round {
            signed: take(&self.queue.signed),
            jobs: take(&self.queue.jobs),
            ..Round::default()
        };
        if round.signed.is_empty() && round.jobs.is_empty() {
            return false;
        }
        if let Err(e) = self.run_round(&mut round).await {
            let msg = e.to_string();
            tracing::error!(error = %msg, "signing: a database transaction failed");
            round.fail(&msg);
            return true;
        }
        for (reply, result, queued) in round.answers {
            if let (Ok(_), Some(q)) = (&result, queued) {
                self.sign_latency.observe(q.elapsed());
            }
            let _ = reply.send(result);
        }
        if !round.reserved.is_empty() {
            lock(&self.queue.to_sign).extend(round.reserved);
            self.start_signers();
        }
        true
    }

    async fn run_round(&self, round: &mut Round) -> Result<(), AuthorityError> {
        // A round that stores nothing only reserves serials: its commit need not wait for the disk
        // (nothing is answered from it; the durable commit that stores the certificates covers it).
        // Its refusals, which are answered, are audited in a durable transaction of their own.
        let durable = !round.signed.is_empty();
        let mut tx = if durable {
            self.store.write().await?
        } else {
            self.store.write_unsynced().await?
        };
        let mut refusals: Vec<(String, String, String)> = Vec::new();
        while let Some((r, der)) = round.signed.pop() {
            let result = match der {
                Err(e) => Err(AuthorityError::Ca(e)),
                Ok(der) => match self.store_one(&mut tx, &r, der).await {
                    Ok(res) => res,
                    Err(e) => {
                        round
                            .answers
                            .push((r.reply, Err(AuthorityError::Internal(String::new())), None));
                        return Err(e);
                    }
                },
            };
            round.answers.push((r.reply, result, Some(r.queued)));
        }
        let mut taken = std::collections::BTreeSet::new();
        round.jobs.reverse();
        while let Some((job, reply, queued)) = round.jobs.pop() {
            let verdict = match self.check_job(&mut tx, &job, &mut taken).await {
                Ok(v) => v,
                Err(e) => {
                    round
                        .answers
                        .push((reply, Err(AuthorityError::Internal(String::new())), None));
                    return Err(e);
                }
            };
            match verdict {
                Ok(c) => round.reserved.push(Reserved {
                    job,
                    reply,
                    queued,
                    c,
                }),
                Err(refusal) => {
                    let detail = refusal.to_string();
                    let name = crate::ca::names::printable(&job.certname);
                    let audited = if durable {
                        let rec = AuditRecord::refused(unix(self.now()), &job.actor, "sign")
                            .on(&name)
                            .detail(&detail);
                        tx.audit(&rec).await
                    } else {
                        refusals.push((job.actor.clone(), name, detail));
                        Ok(())
                    };
                    round.answers.push((reply, Err(refusal), None));
                    audited?;
                }
            }
        }
        if !round.reserved.is_empty() {
            let serials = tx.reserve_serials(round.reserved.len() as u64).await?;
            for (r, serial) in round.reserved.iter_mut().zip(serials) {
                r.c.serial = serial;
            }
        }
        tx.commit().await?;
        if !refusals.is_empty() {
            let mut tx = self.store.write().await?;
            let now = unix(self.now());
            for (actor, name, detail) in &refusals {
                let rec = AuditRecord::refused(now, actor, "sign").on(name).detail(detail);
                tx.audit(&rec).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Starts signing tasks while there is work and fewer than one per core.
    fn start_signers(&self) {
        while !lock(&self.queue.to_sign).is_empty() {
            let claimed = self
                .queue
                .signers
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.queue.cores).then_some(n + 1)
                });
            if claimed.is_err() {
                return;
            }
            let a = self.clone();
            tokio::task::spawn_blocking(move || a.signer_task());
        }
    }

    /// The policy's verdict on one job, and its serial when allowed. The outer error is a storage
    /// failure (the transaction is abandoned); the inner one a refusal (audited by the caller).
    async fn check_job(
        &self,
        tx: &mut WriteTx,
        job: &Job,
        taken: &mut std::collections::BTreeSet<String>,
    ) -> Result<Result<Checked, AuthorityError>, AuthorityError> {
        let row = if taken.contains(&job.certname) {
            None
        } else {
            tx.request(&job.certname).await?
        };
        let Some(row) = row else {
            // Twice in one batch: the first is being signed.
            let has_cert =
                taken.contains(&job.certname) || tx.current_certificate(&job.certname).await?.is_some();
            return Ok(Err(AuthorityError::NoRequest {
                certname: job.certname.clone(),
                has_cert,
            }));
        };
        // A request stored before a name was reserved (or before the server's certname changed) is
        // refused at signing too.
        if let Err(e) = self.check_name_available(&job.certname, &[]) {
            return Ok(Err(e.into()));
        }
        let parsed = match csr::parse_stored_der(&row.csr_der) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.into())),
        };
        let permit = match signing::check(&parsed, &self.settings().signing, job.req.options) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.into())),
        };
        let ttl = self.ttl_for(&parsed, job.req.ttl);
        let validity = match Validity::from_now(self.now(), ttl) {
            Ok(v) => v,
            Err(e) => return Ok(Err(AuthorityError::Invalid(e.to_string()))),
        };
        taken.insert(job.certname.clone());
        Ok(Ok(Checked {
            // Given with the others of the round (one counter update), see `run_round`.
            serial: 0,
            permit,
            spki: parsed.spki_der,
            csr_der: row.csr_der,
            validity,
        }))
    }

    /// The sign stage, on a blocking thread: signs reserved certificates until none is left, handing each to
    /// the store stage.
    fn signer_task(&self) {
        // Gives the task's place back however the task ends (a panic while signing included).
        struct Place<'a>(&'a AtomicUsize);
        impl Drop for Place<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let q = &self.queue;
        let mut place = Some(Place(&q.signers));
        loop {
            let next = lock(&q.to_sign).pop_front();
            let Some(r) = next else {
                drop(place.take());
                // Work queued between the last look and the release would wait: look once more.
                let more = !lock(&q.to_sign).is_empty();
                let reclaimed = more
                    && q.signers
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < q.cores).then_some(n + 1)
                        })
                        .is_ok();
                if reclaimed {
                    place = Some(Place(&q.signers));
                    continue;
                }
                return;
            };
            let settings = self.settings();
            let der = issue::issue_leaf(
                &self.signer,
                &r.c.spki,
                &r.c.permit,
                r.c.serial,
                r.c.validity,
                &settings.issuer_urls,
            );
            lock(&q.signed).push((r, der));
            self.kick_database();
        }
    }

    async fn store_one(
        &self,
        tx: &mut WriteTx,
        r: &Reserved,
        der: Vec<u8>,
    ) -> Result<Result<Issued, AuthorityError>, AuthorityError> {
        let job = &r.job;
        let still = tx
            .request(&job.certname)
            .await?
            .is_some_and(|row| row.csr_der == r.c.csr_der);
        if !still {
            return Ok(Err(AuthorityError::NoRequest {
                certname: job.certname.clone(),
                has_cert: true,
            }));
        }
        let now = unix(self.now());
        let row = CertRow {
            serial: r.c.serial,
            certname: job.certname.clone(),
            der,
            not_before: unix(r.c.validity.not_before),
            not_after: unix(r.c.validity.not_after),
            revoked: None,
        };
        tx.insert_certificate(&row, &status::certificate_status_json(&row)?, now, &job.actor)
            .await?;
        tx.delete_request(&job.certname).await?;
        tx.audit(
            &AuditRecord::ok(now, &job.actor, "sign")
                .on(&job.certname)
                .serial(r.c.serial),
        )
        .await?;
        Ok(Ok(Issued {
            serial: r.c.serial,
            der: row.der,
        }))
    }
}
