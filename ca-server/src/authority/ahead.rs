//! The next CRL's start, made on another core while a CRL is signed.
//!
//! A CRL's signature covers a SHA-256 hash of its whole TBSCertList, which can only be computed from
//! the front, and the front holds the CRL's dates and lengths: at 100,000 entries that hash (4 MB)
//! costs about as much as the signature (two or three times as much on a core without SHA
//! extensions). While one CRL is signed, [`Ahead`] copies and hashes, on another thread, the start
//! of the next one as it will most likely be: one more entry like the last, signed in the second
//! the next revocation is expected in (a burst of revocations), and when that may as well be the
//! second before or after, that second's too, on a thread of its own. A revocation that comes as
//! predicted claims its start, lets the next one's begin, then finishes itself whatever that thread
//! has not done yet (it does not wait for that thread to be given a core again) and hashes only its
//! entry and the CRL's tail; any other finds nothing that fits, cancels the work and signs its CRL
//! whole, as it would have without it. A prediction is good only for the second it names: what is
//! not taken by then (or within 250 ms) is freed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::batch::lock;
use crate::ca::crl::{self, Prepared, Preparing};
use crate::ca::CaSigner;

/// What a CRL's start was made for: [`crl::sign_prepared`] checks the dates and lengths again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The CRL whose entries it starts with: its number and the length of its entries.
    pub base: (u64, usize),
    /// The CRL number it is for.
    pub number: u64,
    /// Its thisUpdate and nextUpdate (Unix seconds).
    pub this_update: i64,
    pub next_update: i64,
    /// The length of all its entries, the base's and the new.
    pub entries_len: usize,
}

/// Where the next CRL's start is made: for one plan, or two when the next revocation may come in
/// either of two seconds.
#[derive(Default)]
pub(crate) struct Ahead {
    slot: Mutex<Vec<Job>>,
    /// How many CRLs were signed from a start made ahead.
    used: std::sync::atomic::AtomicU64,
    /// How many of those starts the revocation finished itself.
    finished_by_taker: std::sync::atomic::AtomicU64,
    /// When the last start was planned (see [`Ahead::pace`]).
    last_planned: Mutex<Option<std::time::Instant>>,
}

struct Job {
    plan: Plan,
    /// Its base is the CRL this process stored and installed (see [`Ahead::confirm`]): another
    /// with the same number and length (a replica's, after this process's transaction failed) can
    /// hold other entries.
    confirmed: bool,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    cancel: AtomicBool,
}

enum State {
    /// Being made: a step at a time by the job's thread, or at once by whoever takes it.
    Running(Box<Work>),
    /// Made (`None`: cancelled or failed).
    Done(Option<Prepared>),
    /// Taken, cancelled or expired.
    Gone,
}

/// A start being made, and the entries it starts with.
struct Work {
    preparing: Preparing,
    known: Vec<Arc<dyn AsRef<[u8]> + Send + Sync>>,
}

impl Work {
    /// Copies and hashes one step more; whether more is left.
    fn step(&mut self, len: usize) -> bool {
        let parts: Vec<&[u8]> = self.known.iter().map(|k| (**k).as_ref()).collect();
        self.preparing.advance(&parts, len)
    }

    /// Whatever is left done at once.
    fn finish(mut self) -> Option<Prepared> {
        while self.step(usize::MAX) {}
        self.preparing.finish()
    }
}

/// A start claimed for the CRL being signed ([`Ahead::claim`]).
pub(crate) struct Claimed<'a> {
    ahead: &'a Ahead,
    left: Left,
}

enum Left {
    Made(Prepared),
    Unfinished(Box<Work>),
}

impl Claimed<'_> {
    /// The start, finished here when the job's thread had not finished it: on the core this
    /// revocation runs on (the job's thread, which yields between steps, may be waiting for one).
    pub(crate) fn finish(self) -> Option<Prepared> {
        let made = match self.left {
            Left::Made(p) => Some(p),
            Left::Unfinished(work) => {
                self.ahead.finished_by_taker.fetch_add(1, Ordering::Relaxed);
                work.finish()
            }
        };
        if made.is_some() {
            self.ahead.used.fetch_add(1, Ordering::Relaxed);
        }
        made
    }
}

/// Marks a job finished, with nothing, if its thread ends without saying so (a panic): the work it
/// left, perhaps half a step, is never taken (the revocation signs its CRL whole).
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        if matches!(*state, State::Running(_)) {
            *state = State::Done(None);
        }
        self.0.changed.notify_all();
    }
}

impl Ahead {
    /// The start made for `plan`, finished by the calling thread if the job's has not finished it
    /// yet (waiting at most for the step it is doing); `None` when none was made for it. Whatever
    /// else was being made is cancelled.
    #[cfg(test)]
    pub(crate) fn take(&self, plan: &Plan) -> Option<Prepared> {
        self.claim(plan)?.finish()
    }

    /// The start made for `plan`, as far as the job's thread got with it, which stops there (it
    /// finishes at most the step it is doing); `None` when none was made for it. Whatever else was
    /// being made is cancelled. [`Claimed::finish`] does the rest on the calling thread: after the
    /// next CRL's start is given to a thread of its own, so that both go on at once.
    pub(crate) fn claim(&self, plan: &Plan) -> Option<Claimed<'_>> {
        let jobs = std::mem::take(&mut *lock(&self.slot));
        let mut fitting = None;
        for job in jobs {
            if fitting.is_none() && job.confirmed && job.plan == *plan {
                fitting = Some(job);
            } else {
                job.cancel();
            }
        }
        let job = fitting?;
        let state = {
            let mut state = lock(&job.shared.state);
            // A thread that panicked in a step leaves its lock poisoned: what it left is not used.
            let sound = !job.shared.state.is_poisoned();
            let state = std::mem::replace(&mut *state, State::Gone);
            if sound {
                state
            } else {
                State::Gone
            }
        };
        job.shared.changed.notify_all();
        let left = match state {
            State::Done(Some(p)) => Left::Made(p),
            State::Running(work) => Left::Unfinished(work),
            _ => return None,
        };
        Some(Claimed { ahead: self, left })
    }

    /// The time since this was last asked, when under `max`, else zero: how soon after this CRL
    /// the next revocation is expected in a burst (a client revoking one certificate after another
    /// keeps a steady pace), so that a start planned just before a second ends is made for the next
    /// second.
    pub(crate) fn pace(&self, max: Duration) -> Duration {
        let now = std::time::Instant::now();
        let previous = lock(&self.last_planned).replace(now);
        previous
            .map(|p| now.saturating_duration_since(p))
            .filter(|gap| *gap <= max)
            .unwrap_or_default()
    }

    /// How many CRLs were signed from a start made ahead.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// How many starts made ahead the revocation taking them finished itself.
    #[cfg(test)]
    pub(crate) fn finished_by_taker(&self) -> u64 {
        self.finished_by_taker.load(Ordering::Relaxed)
    }

    /// The CRL numbered `number`, which this process signed, is committed and installed: a start
    /// made on its entries may be used.
    pub(crate) fn confirm(&self, number: u64) {
        for job in lock(&self.slot).iter_mut().filter(|j| j.plan.base.0 == number) {
            job.confirmed = true;
        }
    }

    /// Starts making, on a thread of its own for each plan, the start of the CRL of each of `plans`
    /// (two when the next revocation may come in either of two seconds), whose entries begin with
    /// `known` (the base CRL's); each is freed if nobody takes it within its `Duration`. What was
    /// being made before is cancelled.
    pub(crate) fn start(
        &self,
        signer: &CaSigner,
        plans: &[(Plan, Duration)],
        known: &[Arc<dyn AsRef<[u8]> + Send + Sync>],
    ) {
        for old in std::mem::take(&mut *lock(&self.slot)) {
            old.cancel();
        }
        let jobs: Vec<Job> = plans
            .iter()
            .filter_map(|(plan, keep)| Job::spawn(signer, *plan, known.to_vec(), *keep))
            .collect();
        // Two callers at once (which the publishing lock rules out) would leave both's jobs: each
        // is taken only for its own plan.
        lock(&self.slot).extend(jobs);
    }
}

impl Job {
    /// Stops its thread and frees what it made.
    fn cancel(self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
        *lock(&self.shared.state) = State::Gone;
        self.shared.changed.notify_all();
    }

    /// The job making the start of the CRL of `plan` on a thread of its own; `None` when it cannot
    /// be made (dates out of range) or no thread can be started.
    fn spawn(
        signer: &CaSigner,
        plan: Plan,
        known: Vec<Arc<dyn AsRef<[u8]> + Send + Sync>>,
        keep: Duration,
    ) -> Option<Job> {
        let (Ok(this_update), Ok(next_update)) = (
            OffsetDateTime::from_unix_timestamp(plan.this_update),
            OffsetDateTime::from_unix_timestamp(plan.next_update),
        ) else {
            return None;
        };
        let known_len: usize = known.iter().map(|k| (**k).as_ref().len()).sum();
        let Ok(preparing) = Preparing::new(
            signer,
            plan.number,
            this_update,
            next_update,
            known_len,
            plan.entries_len.saturating_sub(known_len),
        ) else {
            return None;
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::Running(Box::new(Work { preparing, known }))),
            changed: Condvar::new(),
            cancel: AtomicBool::new(false),
        });
        let job = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name("crl-ahead".into())
            .spawn(move || {
                crate::priority::unpin_this_thread();
                let _finished = Finished(Arc::clone(&job));
                loop {
                    // Work done ahead of need gives way, every few dozen microseconds, to threads
                    // waiting for a core (on two cores, a request's own threads).
                    std::thread::yield_now();
                    let mut state = lock(&job.state);
                    let State::Running(work) = &mut *state else {
                        return; // taken over, cancelled or replaced
                    };
                    if job.cancel.load(Ordering::Relaxed) {
                        *state = State::Gone;
                        job.changed.notify_all();
                        return;
                    }
                    if work.step(crl::PREPARE_STEP) {
                        continue;
                    }
                    let made = match std::mem::replace(&mut *state, State::Gone) {
                        State::Running(work) => work.finish(),
                        _ => None,
                    };
                    *state = State::Done(made);
                    job.changed.notify_all();
                    // Kept while it can still be taken, then freed (megabytes at 100,000 entries).
                    let (mut state, _) = job
                        .changed
                        .wait_timeout_while(state, keep, |s| matches!(s, State::Done(Some(_))))
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *state = State::Gone;
                    return;
                }
            });
        started.ok().map(|_| Job {
            plan,
            confirmed: false,
            shared,
        })
    }
}
