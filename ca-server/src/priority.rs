//! The signer threads' scheduling priority. A certificate's signature is the one long piece of CPU
//! work on the signing path, and it can wait: everything else a signing needs (the request's TLS
//! and HTTP, the write transactions that reserve its serial and store it) is short and on the path
//! of every request in flight. At the same priority, the signer threads hold both cores of a small
//! machine while the request and database threads wait to be scheduled, the pipeline stalls and the
//! signers then run out of work: with 8 clients asking one certificate each, the cores were idle
//! 0.45-0.64 ms per certificate; with the signer threads at the lowest priority (nice 19), 0.05-0.08
//! ms, and signing went from 59.5 to 72-74 % of the ceiling (BENCHMARKS.md, session 13). A thread at
//! nice 19 still takes every core nobody else wants; on a machine whose cores are busy with other
//! processes, signings wait for them.
//!
//! How a thread's priority is lowered is the binary's business (this library has no unsafe code):
//! `ca-server`'s `main` installs setpriority(2) with [`set_lower`]; without it nothing is done.

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
