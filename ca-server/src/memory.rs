//! Giving freed heap memory back to the system after a large piece of work (a listing of many
//! certificates): the allocator keeps what was freed for later, and after a listing of 100,000
//! certificates that is tens of megabytes of free but resident memory. How to give it back is the
//! binary's business (this library has no unsafe code): `ca-server`'s `main` installs glibc's
//! `malloc_trim(3)` with [`set_release`]; without it nothing is done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Work that produced at least this many bytes is large.
pub const LARGE: usize = 4 << 20;

/// At most one release per this long: a release walks the whole heap (a few milliseconds).
pub const EVERY: Duration = Duration::from_secs(2);

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Installs how free memory is given back (once; later calls are ignored).
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// After work that produced `bytes` (its buffers since freed): gives free memory back when the work
/// was [`LARGE`] and no release ran in the last [`EVERY`]; on a blocking thread when called within
/// a runtime. Returns whether a release was started.
pub fn after_work(bytes: usize) -> bool {
    match RELEASE.get() {
        Some(&release) if bytes >= LARGE && due(&LAST, Instant::now()) => {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(release)),
                Err(_) => release(),
            }
            true
        }
        _ => false,
    }
}

/// When the last release started, in ms after [`epoch`] (0: none yet).
static LAST: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whether a release may start at `now` given the last one in `last`, which it then records
/// (one caller wins when several ask at once).
fn due(last: &AtomicU64, now: Instant) -> bool {
    // +1: 0 stands for "never".
    let at = u64::try_from(now.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX - 1) + 1;
    let every = u64::try_from(EVERY.as_millis()).unwrap_or(u64::MAX);
    let prev = last.load(Ordering::Acquire);
    if prev != 0 && at.saturating_sub(prev) < every {
        return false;
    }
    last.compare_exchange(prev, at, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_runs_at_most_once_per_period() {
        let last = AtomicU64::new(0);
        let t0 = epoch();
        assert!(due(&last, t0), "the first release is due");
        assert!(!due(&last, t0 + Duration::from_millis(10)), "not again at once");
        assert!(!due(&last, t0 + EVERY - Duration::from_millis(5)));
        assert!(
            due(&last, t0 + EVERY + Duration::from_millis(5)),
            "due again a period later"
        );
    }

    #[test]
    fn only_large_work_releases_memory() {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        fn count() {
            CALLS.fetch_add(1, Ordering::SeqCst);
        }
        set_release(count);
        assert!(!after_work(LARGE - 1), "small work releases nothing");
        assert!(after_work(LARGE), "large work does");
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert!(!after_work(LARGE), "not twice within a period");
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    }
}
