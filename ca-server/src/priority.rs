//! The signer threads' scheduling priority, and the core of the database writers.
//!
//! **The signers' priority.** A certificate's signature is the one long piece of CPU work on the
//! signing path, and it can wait: everything else a signing needs (the request's TLS and HTTP, the
//! write transactions that reserve its serial and store it) is short and on the path of every
//! request in flight. At the same priority, the signer threads hold both cores of a small
//! machine while the request and database threads wait to be scheduled, the pipeline stalls and the
//! signers then run out of work: with 8 clients asking one certificate each, the cores were idle
//! 0.45-0.64 ms per certificate; with the signer threads at the lowest priority (nice 19), 0.05-0.08
//! ms, and signing went from 59.5 to 72-74 % of the ceiling (BENCHMARKS.md, session 13). A thread at
//! nice 19 still takes every core nobody else wants; on a machine whose cores are busy with other
//! processes, signings wait for them.
//!
//! **The signers' time slice.** A nice value weighs how the cores are shared over time, not how
//! soon a task that wakes gets one: Linux's scheduler (EEVDF) lets the running task finish its time
//! slice (1.4 ms here) unless the task waking has a shorter slice than it. PostgreSQL on the same
//! cores runs in another scheduling group (a systemd service, a session), where the signers' nice
//! value does not count: each answer it owed a write transaction waited for the signature in
//! progress, the storing rounds took 3.2-3.9 ms and the cores were idle 0.22-0.31 ms per
//! certificate. The binary gives the signer threads the longest slice the kernel takes (100 ms,
//! Linux 6.12 and later), so that any task waking with the usual slice runs at once: on PostgreSQL
//! the rounds took 1.1-2.0 ms, the cores were idle 0.05-0.07 ms per certificate, and one request
//! per certificate went from 62-71 to 73-78 % of the ceiling (five alternated pairs); on SQLite,
//! within the noise (BENCHMARKS.md, session 24).
//!
//! **The writers' core.** A SQLite write transaction is a conversation between two threads: the
//! writers' thread (see `authority::spawn_writer`), which runs the signing pipeline's rounds and
//! the CSR submissions, and the connection's own SQLite thread, which runs each statement; every
//! statement, the `BEGIN` and the `COMMIT` wake one and then the other. On different cores each
//! wake-up is a cross-core interrupt, which in a virtual machine costs a trip through the
//! hypervisor: about 57 µs of CPU per statement measured (a signing round of about ten such trips
//! took 1.0-1.2 ms of CPU). With both threads kept on one core, a wake-up is a switch on that
//! core: the same rounds took 0.57-1.14 ms, the database's share of a certificate fell from
//! 0.46-0.76 to 0.24-0.40 ms, signing with 8 clients went from 65-73 to 70-84 % of the ceiling and
//! CSR submissions from 2,100-4,700 to 3,600-5,300 per second (BENCHMARKS.md, session 15). So the
//! writers' thread keeps itself on one core ([`pin_writer_thread`]); the threads started from it
//! for other work (signers, the CRL thread, blocking tasks) take back every core
//! ([`unpin_this_thread`]). Since session 21 the batched writers' SQLite statements run on the
//! writers' thread itself (`storage/direct.rs`), with no second thread to wake; its placement on
//! one core was kept as it was, not measured again.
//!
//! How a thread's priority and placement are changed is the binary's business (this library has no
//! unsafe code): `ca-server`'s `main` installs setpriority(2) and sched_setattr(2) with
//! [`set_lower`] and sched_setaffinity(2) with [`set_placement`]; without them nothing is done.

use std::sync::OnceLock;

static LOWER: OnceLock<fn()> = OnceLock::new();

/// Installs how the calling thread's priority is lowered (once; later calls are ignored).
pub fn set_lower(lower: fn()) {
    let _ = LOWER.set(lower);
}

/// Lowers the calling thread's priority, when the binary said how.
pub(crate) fn lower_this_thread() {
    if let Some(lower) = LOWER.get() {
        lower();
    }
}

/// How a thread is kept on one core and given back every core (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Keeps the calling thread on one core of those the process may use (the same core at every
    /// call); false when it did not (one core only, or the call failed).
    pub pin: fn() -> bool,
    /// Lets the calling thread run on every core the process may use.
    pub unpin: fn(),
}

static PLACEMENT: OnceLock<Placement> = OnceLock::new();

/// Installs how threads are placed (once; later calls are ignored).
pub fn set_placement(placement: Placement) {
    let _ = PLACEMENT.set(placement);
}

/// Whether the binary said how threads are placed.
pub(crate) fn places_threads() -> bool {
    PLACEMENT.get().is_some()
}

/// Keeps the calling thread (the writers' thread) on one core, when the binary said how; false
/// otherwise.
pub(crate) fn pin_writer_thread() -> bool {
    PLACEMENT.get().is_some_and(|p| (p.pin)())
}

/// Lets the calling thread run on every core again (a thread started from the writers' thread
/// inherits its core), when the binary said how.
pub(crate) fn unpin_this_thread() {
    if let Some(p) = PLACEMENT.get() {
        (p.unpin)();
    }
}
