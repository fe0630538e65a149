//! The next CRL's start, made on another core while a CRL is signed.
//!
//! A CRL's signature covers a SHA-256 hash of its whole TBSCertList, which can only be computed from
//! the front, and the front holds the CRL's dates and lengths: at 100,000 entries that hash (4 MB)
//! costs about as much as the signature. While one CRL is signed, [`Ahead`] copies and hashes, on
//! another thread, the start of the next one as it will most likely be: one more entry like the
//! last, signed in the same second (a burst of revocations). A revocation that comes as predicted
//! then hashes only its entry and the CRL's tail; any other finds nothing that fits, cancels the
//! work and signs its CRL whole, as it would have without it. A prediction is good only for the
//! second it names: what is not taken by then (or within 250 ms) is freed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::batch::lock;
use crate::ca::crl::{self, Prepared};
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

/// Where the next CRL's start is made: one at a time.
#[derive(Default)]
pub(crate) struct Ahead {
    slot: Mutex<Option<Job>>,
    /// How many CRLs were signed from a start made ahead.
    used: std::sync::atomic::AtomicU64,
}

struct Job {
    plan: Plan,
    /// Its base is the CRL this process stored and installed (see [`Ahead::confirm`]): another
    /// with the same number and length (a replica's, after this process's transaction failed) can
    /// hold other entries.
    confirmed: bool,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    cancel: AtomicBool,
}

#[derive(Default)]
enum State {
    #[default]
    Running,
    /// Made (`None`: cancelled or failed).
    Done(Option<Prepared>),
    /// Taken, cancelled or expired.
    Gone,
}

/// Marks a job finished, with nothing, if its thread ends without saying so (a panic): a revocation
/// waiting for it then signs its CRL whole instead of waiting forever.
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        if matches!(*state, State::Running) {
            *state = State::Done(None);
        }
        self.0.changed.notify_all();
    }
}

impl Ahead {
    /// The start made for `plan`, once it is finished (waiting for it if need be); `None` when
    /// none was made for it. Whatever else was being made is cancelled.
    pub(crate) fn take(&self, plan: &Plan) -> Option<Prepared> {
        let job = lock(&self.slot).take()?;
        let fits = job.confirmed && job.plan == *plan;
        if !fits {
            job.shared.cancel.store(true, Ordering::Relaxed);
        }
        let mut state = lock(&job.shared.state);
        if fits {
            while matches!(*state, State::Running) {
                state = job
                    .shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        let taken = match std::mem::replace(&mut *state, State::Gone) {
            State::Done(p) if fits => p,
            _ => None,
        };
        job.shared.changed.notify_all();
        if taken.is_some() {
            self.used.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// How many CRLs were signed from a start made ahead.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The CRL numbered `number`, which this process signed, is committed and installed: a start
    /// made on its entries may be used.
    pub(crate) fn confirm(&self, number: u64) {
        if let Some(job) = lock(&self.slot).as_mut().filter(|j| j.plan.base.0 == number) {
            job.confirmed = true;
        }
    }

    /// Starts making, on a thread of its own, the start of the CRL of `plan` whose entries begin with
    /// `known` (the base CRL's). It is freed if nobody takes it within `keep`.
    pub(crate) fn start(
        &self,
        signer: Arc<CaSigner>,
        plan: Plan,
        known: Vec<Arc<dyn AsRef<[u8]> + Send + Sync>>,
        keep: Duration,
    ) {
        let (Ok(this_update), Ok(next_update)) = (
            OffsetDateTime::from_unix_timestamp(plan.this_update),
            OffsetDateTime::from_unix_timestamp(plan.next_update),
        ) else {
            return;
        };
        let shared = Arc::new(Shared::default());
        let job = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name("crl-ahead".into())
            .spawn(move || {
                let _finished = Finished(Arc::clone(&job));
                let parts: Vec<&[u8]> = known.iter().map(|k| (**k).as_ref()).collect();
                let more = plan
                    .entries_len
                    .saturating_sub(parts.iter().map(|p| p.len()).sum());
                let made = crl::prepare(
                    &signer,
                    plan.number,
                    this_update,
                    next_update,
                    &parts,
                    more,
                    &job.cancel,
                );
                drop(parts);
                drop(known);
                let mut state = lock(&job.state);
                if matches!(*state, State::Running) {
                    *state = State::Done(made.ok().flatten());
                }
                job.changed.notify_all();
                // Kept while it can still be taken, then freed (megabytes at 100,000 entries).
                let (mut state, _) = job
                    .changed
                    .wait_timeout_while(state, keep, |s| matches!(s, State::Done(Some(_))))
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *state = State::Gone;
            });
        if started.is_ok() {
            let old = lock(&self.slot).replace(Job {
                plan,
                confirmed: false,
                shared,
            });
            if let Some(old) = old {
                old.shared.cancel.store(true, Ordering::Relaxed);
                *lock(&old.shared.state) = State::Gone;
                old.shared.changed.notify_all();
            }
        }
    }
}
