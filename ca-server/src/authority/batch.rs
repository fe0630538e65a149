//! Issuance bound by the signature alone, as a pipeline of two stages that feed each other:
//!
//! - **database**: one task, one write transaction at a time, in which it stores the certificates
//!   signed since its last transaction (acknowledged once committed) and checks the queued signings
//!   against the policy and reserves their serials (refusals audited in it). Under load, every
//!   transaction carries many certificates both ways;
//! - **sign**: one thread per core (`ca-signer`) takes reserved certificates one after the other and signs
//!   them, with no lock held (no hand-over between two signatures).
//!
//! On PostgreSQL the reservations are a stage of their own (see
//! [`crate::storage::Store::reserves_apart`]): a task reads the queued signings' requests and draws
//! their serials in a statement outside the CA's write lock, and the signers start at once instead
//! of waiting for a write transaction (several round trips to another process) to reserve them; the
//! write transaction that stores a certificate checks that its request is still the one reserved,
//! and audits the refusals before they are answered.
//!
//! The cores keep signing while the database task waits for its commits. A round that only reserves
//! does not wait for the disk at its commit (the durable commit that stores the certificates, and
//! answers their requests, makes it durable with it). A crash between the reservation and the storing
//! leaves a gap in the serials, or, when the reservation was lost with the crash, frees those serials
//! again: no certificate with them was stored or handed out, so no two certificates anyone holds
//! share a serial.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{status, unix, Authority, AuthorityError, Issued, SignRequest};
use crate::ca::csr;
use crate::ca::issue::{self, Validity};
use crate::policy::{signing, Permit};
use crate::storage::{Apart, AuditRecord, CertRow, NewCertificate, RequestRow, StoreError, WriteTx};

/// One signing asked for.
pub(crate) struct Job {
    pub actor: String,
    pub certname: String,
    pub req: SignRequest,
    /// The request as its submitter's task parsed it (autosign): used when it is still the one
    /// stored, so the write transaction does not parse it again.
    pub csr: Option<Arc<csr::Csr>>,
}

type Reply = oneshot::Sender<Result<Issued, AuthorityError>>;

/// A certificate made by a signer: its DER and status object.
struct Made {
    der: Vec<u8>,
    status_json: String,
}

/// A reserved job and its certificate (or why there is none).
type Signed = (Reserved, Result<Made, AuthorityError>);

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

/// An answer owed once the transaction that stores (or audits) it commits.
type Answer = (Reply, Result<Issued, AuthorityError>, Option<Instant>);

/// Refusals decided outside a write transaction ([`Authority::reservation_round`]): answered once the
/// next write transaction has audited them (actor, printable name, why).
#[derive(Default)]
struct Refusals {
    answers: Vec<Answer>,
    audits: Vec<(String, String, String)>,
}

/// The work between the stages.
pub(crate) struct Queue {
    /// Waiting to be reserved.
    jobs: Mutex<Vec<(Job, Reply, Instant)>>,
    /// Whether the database task runs.
    writing: Arc<AtomicBool>,
    /// Whether the reservation task runs (when the store reserves serials apart).
    reserving: Arc<AtomicBool>,
    /// Refused by the reservation task, waiting for the database task to audit them.
    refused: Mutex<Vec<Refusals>>,
    /// Reserved, waiting for a signer.
    to_sign: Mutex<VecDeque<Reserved>>,
    /// Told when certificates are queued in `to_sign`: wakes the signers waiting for work.
    work: Condvar,
    /// Told when a signer takes a certificate and fewer than one per signer are left waiting.
    room: tokio::sync::Notify,
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
            reserving: Arc::default(),
            refused: Mutex::default(),
            to_sign: Mutex::default(),
            work: Condvar::new(),
            room: tokio::sync::Notify::new(),
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

/// The longest a database round waits for the previous one's certificates to be signed: the time
/// of [`ROUND_WAIT_SIGNATURES`] signatures of the CA key on this machine, within these bounds.
const ROUND_WAIT_BOUNDS: (Duration, Duration) = (Duration::from_millis(25), Duration::from_millis(100));

/// Signatures one signer makes while a round waits, at most: under bulk signing, a round then
/// stores about this many certificates per signer whatever a signature costs (a fixed 25 ms was
/// about 11 RSA-4096 signatures on a machine signing 450/s per core, 4 on one signing 150/s).
const ROUND_WAIT_SIGNATURES: u32 = 12;

/// How long a round may wait when one signature of the CA key takes `signature` (its mean CPU
/// time so far; zero when unknown).
fn round_wait(signature: Duration) -> Duration {
    let (least, most) = ROUND_WAIT_BOUNDS;
    signature.saturating_mul(ROUND_WAIT_SIGNATURES).clamp(least, most)
}

/// [`round_wait`] for the CA key's signatures made so far in this process.
fn current_round_wait() -> Duration {
    let (count, cpu) = crate::ca::signer::signatures();
    let mean_ns = cpu.as_nanos().checked_div(u128::from(count)).unwrap_or(0);
    round_wait(Duration::from_nanos(u64::try_from(mean_ns).unwrap_or(u64::MAX)))
}

/// How long a signer with nothing to sign waits for more before its thread ends: under one request
/// per certificate the signers run out of work for moments, which need not cost a new thread each.
const SIGNER_LINGER: Duration = Duration::from_millis(100);

/// The most signings (or CSR submissions, see `submits.rs`) one transaction takes: bounds a
/// transaction's size and a request's wait.
const MAX_BATCH: usize = 256;

impl Queue {
    /// Whether every signer has a certificate waiting after its current one.
    fn signers_busy(&self) -> bool {
        lock(&self.to_sign).len() >= self.cores
    }
    /// Whether the database task has work: `apart` when the queued signings are the reservation
    /// task's.
    fn has_work(&self, apart: bool) -> bool {
        (!apart && !lock(&self.jobs).is_empty())
            || !lock(&self.signed).is_empty()
            || !lock(&self.refused).is_empty()
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

/// Where serials are reserved: in a write transaction (which also stores certificates), or apart
/// from any ([`crate::storage::Store::reserves_apart`]).
enum Via<'a> {
    Tx(&'a mut WriteTx),
    Apart(&'a mut Apart),
}

impl Via<'_> {
    /// A certname's current certificate, as the transaction sees it or as committed now.
    async fn current_certificate(&mut self, certname: &str) -> Result<Option<CertRow>, StoreError> {
        match self {
            Via::Tx(tx) => tx.current_certificate(certname).await,
            Via::Apart(apart) => apart.current_certificate(certname).await,
        }
    }
}

/// One database round's work, each item with the reply it owes.
#[derive(Default)]
struct Round {
    /// Not looked at yet.
    signed: Vec<Signed>,
    jobs: Vec<(Job, Reply, Instant)>,
    /// Done, answered once the transaction commits.
    answers: Vec<Answer>,
    /// Refusals to audit (actor, printable name, why), each answered in `answers`.
    refusals: Vec<(String, String, String)>,
    reserved: Vec<Reserved>,
}

impl Round {
    /// The transaction failed: every item gets the error.
    fn fail(self, cause: &crate::error::Shared) {
        let err = || {
            Err(AuthorityError::failed(
                "a database transaction failed",
                cause.clone(),
            ))
        };
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
        if self.store.reserves_apart() {
            self.kick_reservations();
        } else {
            self.kick_database();
        }
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
        let apart = self.store.reserves_apart();
        let a = self.clone();
        super::run_writer(
            Arc::clone(&self.queue.writing),
            move || queue.has_work(apart),
            move || {
                let a = a.clone();
                async move {
                    let started = Instant::now();
                    if !a.database_round().await {
                        return false;
                    }
                    // While the signers have work queued, waiting costs no signature: the next round
                    // then carries more certificates, and fewer commits take CPU from the signatures.
                    // Woken by the signers, not by a timer: a timer's ticks would take the cores
                    // from the signatures a thousand times a second.
                    let most = current_round_wait();
                    while a.queue.signers_busy() {
                        let Some(left) = most.checked_sub(started.elapsed()) else {
                            break;
                        };
                        let _ = tokio::time::timeout(left, a.queue.room.notified()).await;
                    }
                    true
                }
            },
        );
    }

    /// Runs the reservation task unless it runs already (when the store reserves serials apart).
    fn kick_reservations(&self) {
        let queue = Arc::clone(&self.queue);
        let a = self.clone();
        super::run_writer(
            Arc::clone(&self.queue.reserving),
            move || !lock(&queue.jobs).is_empty(),
            move || {
                let a = a.clone();
                async move { a.reservation_round().await }
            },
        );
    }

    /// Outside any write transaction (see [`crate::storage::Store::reserves_apart`]): checks the
    /// queued signings against the policy and the pending requests as committed, reserves the serials
    /// of those allowed (one statement) and hands them to the signers at once, without waiting for a
    /// write transaction under way. The write transaction that stores a certificate checks again that
    /// its request is still the one it was reserved for. Refusals wait for the next write transaction
    /// to audit them before they are answered. Returns whether there was work.
    async fn reservation_round(&self) -> bool {
        let mut round = Round {
            jobs: take(&self.queue.jobs),
            ..Round::default()
        };
        if round.jobs.is_empty() {
            return false;
        }
        let now = self.now();
        let read = async {
            let mut apart = self.store.apart().await?;
            let names: Vec<&str> = round.jobs.iter().map(|(j, _, _)| j.certname.as_str()).collect();
            let pending = apart.requests_named(&names).await?;
            Ok::<_, StoreError>((apart, pending))
        }
        .await;
        let ran = match read {
            Ok((mut apart, pending)) => {
                let checked = self
                    .check_jobs(Via::Apart(&mut apart), &mut round, pending, &[], now)
                    .await;
                match checked {
                    Ok(()) if round.reserved.is_empty() => Ok(()),
                    Ok(()) => match apart.reserve_serials(round.reserved.len() as u64).await {
                        Ok(serials) => assign_serials(&mut round, serials),
                        Err(e) => Err(e.into()),
                    },
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = ran {
            tracing::error!(error = %crate::error::Chain(&e), "signing: reserving serials failed");
            round.fail(&crate::error::Shared(std::sync::Arc::new(e)));
            return true;
        }
        if !round.answers.is_empty() {
            lock(&self.queue.refused).push(Refusals {
                answers: std::mem::take(&mut round.answers),
                audits: std::mem::take(&mut round.refusals),
            });
            self.kick_database();
        }
        self.hand_to_signers(round.reserved);
        true
    }

    /// Queues reserved certificates for the signers, starting signers as needed.
    fn hand_to_signers(&self, reserved: Vec<Reserved>) {
        if !reserved.is_empty() {
            lock(&self.queue.to_sign).extend(reserved);
            self.queue.work.notify_all();
            self.start_signers();
        }
    }

    /// One transaction: store what was signed, audit the refusals decided apart, reserve what was
    /// queued (unless the store reserves apart). Returns whether there was work.
    async fn database_round(&self) -> bool {
        let mut round = Round {
            signed: take(&self.queue.signed),
            jobs: if self.store.reserves_apart() {
                Vec::new()
            } else {
                take(&self.queue.jobs)
            },
            ..Round::default()
        };
        for r in std::mem::take(&mut *lock(&self.queue.refused)) {
            round.answers.extend(r.answers);
            round.refusals.extend(r.audits);
        }
        if round.signed.is_empty() && round.jobs.is_empty() && round.answers.is_empty() {
            return false;
        }
        let started = Instant::now();
        let ran = self.run_round(&mut round).await;
        self.round_latency.observe(started.elapsed());
        if let Err(e) = ran {
            tracing::error!(error = %crate::error::Chain(&e), "signing: a database transaction failed");
            round.fail(&crate::error::Shared(std::sync::Arc::new(e)));
            return true;
        }
        for (reply, result, queued) in round.answers {
            if let (Ok(_), Some(q)) = (&result, queued) {
                self.sign_latency.observe(q.elapsed());
            }
            let _ = reply.send(result);
        }
        self.hand_to_signers(round.reserved);
        true
    }

    async fn run_round(&self, round: &mut Round) -> Result<(), AuthorityError> {
        // A round that stores nothing only reserves serials: its commit need not wait for the disk
        // (nothing is answered from it; the durable commit that stores the certificates covers it).
        // Its refusals, which are answered, are audited in a durable transaction of their own.
        let durable = !round.signed.is_empty() || !round.refusals.is_empty();
        let mut tx = if durable {
            self.store.write_batch().await?
        } else {
            self.store.write_batch_unsynced().await?
        };
        let now = self.now();
        // Four round trips per round on PostgreSQL, whatever its size (each a wake-up of another
        // process): the begin, the reads, the writes and the commit. On SQLite (each a wake-up of
        // the connection's thread) the begin goes with the reads, and the commit with the writes
        // unless they reserve serials (whose answer must be read before the commit): two or three.
        // Every item is still in `round`, so a failure answers each one with the error.
        let mut pending = {
            let ok = round.signed.iter().filter(|(_, made)| made.is_ok());
            let names: Vec<&str> = ok
                .clone()
                .map(|(r, _)| r.job.certname.as_str())
                .chain(round.jobs.iter().map(|(j, _, _)| j.certname.as_str()))
                .collect();
            if durable {
                // Each certificate signed is audited, stored or refused, with the refusals decided
                // apart.
                let audits = ok.count() + round.refusals.len();
                tx.requests_named_before_audit(&names, audits).await?
            } else {
                tx.requests_named(&names).await?
            }
        };
        let stored = take_signed(round, &mut pending);
        let taken: Vec<&str> = stored.iter().map(|(_, row, _)| row.certname.as_str()).collect();
        let at = unix(now);
        let written = match self
            .check_jobs(Via::Tx(&mut tx), round, pending, &taken, now)
            .await
        {
            Ok(()) => {
                let new: Vec<NewCertificate<'_>> = stored
                    .iter()
                    .map(|(r, row, status_json)| NewCertificate {
                        row,
                        status_json,
                        by: &r.job.actor,
                    })
                    .collect();
                let oks = stored.iter().map(|(r, row, _)| {
                    AuditRecord::ok(at, &r.job.actor, "sign")
                        .on(&row.certname)
                        .serial(row.serial)
                });
                let records: Vec<AuditRecord<'_>> = if durable {
                    oks.chain(refusal_records(&round.refusals, at)).collect()
                } else {
                    Vec::new()
                };
                tx.store_round_and_commit(&new, at, &taken, &records, round.reserved.len() as u64)
                    .await
                    .map_err(AuthorityError::from)
            }
            Err(e) => Err(e),
        };
        drop(taken);
        // Answered once the transaction commits; with its error if it fails (see `Round::fail`).
        for (r, row, _) in stored {
            let issued = Issued {
                serial: row.serial,
                der: row.der,
            };
            round.answers.push((r.reply, Ok(issued), Some(r.queued)));
        }
        let serials = written?;
        // Committed: the certificates stored stand whatever follows; only the reservations fail.
        if let Err(e) = assign_serials(round, serials) {
            tracing::error!(error = %e, "signing: reserving serials failed");
            for r in std::mem::take(&mut round.reserved) {
                round
                    .answers
                    .push((r.reply, Err(AuthorityError::Internal(e.to_string())), None));
            }
        }
        if !durable && !round.refusals.is_empty() {
            let records: Vec<AuditRecord<'_>> = refusal_records(&round.refusals, at).collect();
            let mut tx = self.store.write().await?;
            tx.audit_all(&records).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Checks the round's jobs against the policy, in a write transaction or apart (see [`Via`]);
    /// those allowed go to `round.reserved`, their serials given with the others of the round (one
    /// counter update, see [`assign_serials`]). `pending`: the requests still pending once the
    /// round's certificates were taken from it; `taken`: the names of the certificates the round
    /// stores (their requests are taken, and they have a certificate). The refusals are answered in
    /// `round.answers` and listed in `round.refusals` for the caller to audit.
    async fn check_jobs(
        &self,
        mut via: Via<'_>,
        round: &mut Round,
        mut pending: HashMap<String, RequestRow>,
        taken: &[&str],
        now: time::OffsetDateTime,
    ) -> Result<(), AuthorityError> {
        let jobs = std::mem::take(&mut round.jobs);
        let mut jobs = jobs.into_iter();
        while let Some((job, reply, queued)) = jobs.next() {
            // A name is reserved once per round: a second job for it finds its request taken.
            let row = pending.remove(&job.certname);
            let verdict = match row {
                Some(row) => Ok(self.check_job(&job, row, now)),
                None if taken.contains(&job.certname.as_str())
                    || round.reserved.iter().any(|r| r.job.certname == job.certname) =>
                {
                    Ok(Err(AuthorityError::NoRequest {
                        certname: job.certname.clone(),
                        has_cert: true,
                    }))
                }
                None => match via.current_certificate(&job.certname).await {
                    Ok(cert) => Ok(Err(AuthorityError::NoRequest {
                        certname: job.certname.clone(),
                        has_cert: cert.is_some(),
                    })),
                    Err(e) => Err(e),
                },
            };
            match verdict {
                Ok(Ok(c)) => round.reserved.push(Reserved {
                    job,
                    reply,
                    queued,
                    c,
                }),
                Ok(Err(refusal)) => {
                    let name = crate::ca::names::printable(&job.certname);
                    round.refusals.push((job.actor, name, refusal.to_string()));
                    round.answers.push((reply, Err(refusal), None));
                }
                Err(e) => {
                    // The transaction is abandoned: the jobs not looked at get its error too.
                    round.jobs.push((job, reply, queued));
                    round.jobs.extend(jobs);
                    return Err(e.into());
                }
            }
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
            self.spawn_signer();
        }
    }

    /// One signing task (its place among the signers claimed) on a thread of its own named
    /// `ca-signer`, so that its CPU time can be told from the request threads' in /proc, at the
    /// lowest priority ([`crate::priority`]); entered in the current runtime. Should the thread not
    /// start, the task runs on the runtime's blocking pool (at the usual priority).
    fn spawn_signer(&self) {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let entered = runtime.clone();
        let a = self.clone();
        let started = std::thread::Builder::new()
            .name("ca-signer".into())
            .spawn(move || {
                crate::priority::lower_this_thread();
                crate::priority::unpin_this_thread();
                let _entered = entered.as_ref().map(tokio::runtime::Handle::enter);
                a.signer_task();
            });
        let Err(e) = started else { return };
        let a = self.clone();
        match runtime {
            Some(rt) => {
                tracing::warn!(error = %e, "signing: no thread for a signer, using the blocking pool");
                drop(rt.spawn_blocking(move || a.signer_task()));
            }
            None => {
                // Nothing can sign now; the next round starts a signer again.
                tracing::error!(error = %e, "signing: no thread for a signer");
                self.queue.signers.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The policy's verdict on one job whose request is `row`, dated `now`; its serial is given with
    /// the others of the round (one counter update), see [`Authority::reserve`].
    fn check_job(
        &self,
        job: &Job,
        row: RequestRow,
        now: time::OffsetDateTime,
    ) -> Result<Checked, AuthorityError> {
        // A request stored before a name was reserved (or before the server's certname changed) is
        // refused at signing too.
        self.check_name_available(&job.certname, &[])?;
        let parsed = match &job.csr {
            Some(c) if c.der == row.csr_der => Arc::clone(c),
            _ => Arc::new(csr::parse_stored_der(&row.csr_der)?),
        };
        let settings = self.settings();
        let permit = signing::check(&parsed, &settings.signing, job.req.options)?;
        let ttl = self.ttl_for(&parsed, job.req.ttl);
        let validity = Validity::from_now(now, ttl).map_err(|e| AuthorityError::Invalid(e.to_string()))?;
        Ok(Checked {
            serial: 0,
            permit,
            spki: parsed.spki_der.clone(),
            csr_der: row.csr_der,
            validity,
        })
    }

    /// The sign stage, on a thread of its own: signs reserved certificates, handing each to the store
    /// stage, until none was left for [`SIGNER_LINGER`].
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
            let next = {
                let mut waiting = lock(&q.to_sign);
                let until = Instant::now() + SIGNER_LINGER;
                loop {
                    if let Some(r) = waiting.pop_front() {
                        if waiting.len() < q.cores {
                            q.room.notify_one();
                        }
                        break Some(r);
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break None;
                    }
                    waiting = q
                        .work
                        .wait_timeout(waiting, left)
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g);
                }
            };
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
            let made = self.make(&r.c);
            lock(&q.signed).push((r, made));
            self.kick_database();
        }
    }

    /// Signs a reserved certificate and makes its status object (on the signer's thread, outside the
    /// write transaction).
    fn make(&self, c: &Checked) -> Result<Made, AuthorityError> {
        let settings = self.settings();
        let der = issue::issue_leaf(
            &self.signer,
            &c.spki,
            &c.permit,
            c.serial,
            c.validity,
            &settings.issuer_urls,
        )?;
        let row = CertRow {
            serial: c.serial,
            certname: c.permit.certname().to_string(),
            der,
            not_before: unix(c.validity.not_before),
            not_after: unix(c.validity.not_after),
            revoked: None,
        };
        let status_json = status::certificate_status_json(&row)?;
        Ok(Made {
            der: row.der,
            status_json,
        })
    }
}

/// Takes the round's signed certificates whose requests are still the ones they were reserved for
/// (each taken by the first certificate stored for it, and removed from `pending`): they are to be
/// stored. The others are answered in `round` (a signing that failed with its error; a certificate
/// whose request was cleaned, replaced or signed by an earlier certificate of the round since its
/// reservation refused, and listed in `round.refusals` to be audited as such).
fn take_signed(
    round: &mut Round,
    pending: &mut HashMap<String, RequestRow>,
) -> Vec<(Reserved, CertRow, String)> {
    let signed = std::mem::take(&mut round.signed);
    let mut stored = Vec::with_capacity(signed.len());
    for (r, made) in signed {
        let made = match made {
            Ok(m) => m,
            Err(e) => {
                round.answers.push((r.reply, Err(e), Some(r.queued)));
                continue;
            }
        };
        let name = &r.job.certname;
        let still = pending.get(name).is_some_and(|row| row.csr_der == r.c.csr_der);
        if still {
            pending.remove(name);
        } else {
            // Refused like a signing asked after the first was stored, and audited like it.
            let gone = AuthorityError::NoRequest {
                certname: name.clone(),
                has_cert: true,
            };
            let printable = crate::ca::names::printable(name);
            round
                .refusals
                .push((r.job.actor.clone(), printable, gone.to_string()));
            round.answers.push((r.reply, Err(gone), Some(r.queued)));
            continue;
        }
        let row = CertRow {
            serial: r.c.serial,
            certname: name.clone(),
            der: made.der,
            not_before: unix(r.c.validity.not_before),
            not_after: unix(r.c.validity.not_after),
            revoked: None,
        };
        stored.push((r, row, made.status_json));
    }
    stored
}

/// The audit records of signings refused (actor, printable name, why), dated `at`.
fn refusal_records(refusals: &[(String, String, String)], at: i64) -> impl Iterator<Item = AuditRecord<'_>> {
    refusals
        .iter()
        .map(move |(actor, name, detail)| AuditRecord::refused(at, actor, "sign").on(name).detail(detail))
}

/// Gives the round's reserved certificates their serials, `serials` (as many, in order).
fn assign_serials(round: &mut Round, serials: std::ops::Range<u64>) -> Result<(), AuthorityError> {
    let n = serials.end.saturating_sub(serials.start);
    if n != round.reserved.len() as u64 {
        return Err(AuthorityError::Internal(format!(
            "{n} serials reserved for {} certificates",
            round.reserved.len()
        )));
    }
    for (r, serial) in round.reserved.iter_mut().zip(serials) {
        r.c.serial = serial;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_waits_for_the_time_of_a_dozen_signatures_within_its_bounds() {
        let ms = Duration::from_millis;
        // Unknown (no CPU clock) or a fast key: the least, 25 ms.
        assert_eq!(round_wait(Duration::ZERO), ms(25));
        assert_eq!(round_wait(Duration::from_micros(30)), ms(25));
        assert_eq!(round_wait(ms(2)), ms(25));
        // RSA-4096 on a machine signing 150/s per core: 12 signatures.
        assert_eq!(
            round_wait(Duration::from_micros(6_600)),
            Duration::from_micros(79_200)
        );
        // Slower still (a slow token, RSA-8192): at most 100 ms, whatever a signature costs.
        assert_eq!(round_wait(ms(40)), ms(100));
        assert_eq!(round_wait(Duration::MAX), ms(100));
    }
}
