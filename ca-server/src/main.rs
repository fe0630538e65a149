//! `ca-server`: arguments → settings → logging → serve.

use std::path::PathBuf;
use std::sync::Arc;

use ca_server::clock::SystemClock;
use ca_server::config::{Overrides, Settings};
use ca_server::datadir::default_data_dir;
use ca_server::server;
use clap::Parser;

/// A Puppet-compatible certificate authority server (Puppet's CA API over HTTPS).
#[derive(Debug, Parser)]
#[command(name = "ca-server", version, about)]
struct Args {
    /// Configuration file (TOML; unknown keys are refused). Default: <data-dir>/config.toml if present.
    #[arg(long, env = "CA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database, CA key, certificates); created with a new CA when empty. Default:
    /// /var/lib/ca for root, ~/.local/share/ca for other users.
    #[arg(long, env = "CA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address (default 0.0.0.0:8140).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Certname of this server, used when a new CA is created (default: the host's FQDN).
    #[arg(long)]
    certname: Option<String>,
    /// Extra alt names of the server certificate made with a new CA (comma-separated).
    #[arg(long, value_delimiter = ',')]
    dns_alt_names: Option<Vec<String>>,
    /// File holding the passphrase of an encrypted CA key (one trailing newline is ignored). Else
    /// `[ca] key-passphrase-file`, $CA_KEY_PASSPHRASE_FILE, or $CA_KEY_PASSPHRASE. With an empty data
    /// directory, the new CA's key is encrypted with it.
    #[arg(long, value_name = "FILE")]
    ca_key_passphrase_file: Option<PathBuf>,
    /// Keep the CA's state in this PostgreSQL database (`postgresql://user@host/db`; several replicas
    /// share it) instead of the data directory's SQLite file. Also `database-url` in the configuration.
    #[arg(long, env = "CA_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// Validate the configuration (and the auth.conf and passphrase file it names), then exit.
    #[arg(long)]
    check_config: bool,
}

/// glibc's malloc: one arena per two cores, at least two (by default it makes up to eight per core,
/// one for each thread that allocates while the others are in use). An arena keeps what its threads
/// freed, up to twice the largest block the process has mapped and freed (8 MB once a 4 MB CRL was
/// freed), so with a pool of threads rotating over them the server stayed at 87-97 MB after
/// revocations at 100,000 entries and listings of 100,000 certificates: 56 MB with two arenas on
/// two cores, for the same CPU per request (BENCHMARKS.md, session 11). With one, the keep-alive
/// GET phases took up to three times the CPU per request (threads waiting for its lock).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    let count = std::thread::available_parallelism().map_or(2, |n| n.get().div_ceil(2).max(2));
    let arenas = libc::c_int::try_from(count).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt(3) only sets a parameter of the allocator, here to a positive count; it is
    // called first thing in `main`, before the process has any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Gives the allocator's free memory back to the system, for the library to call after a large
/// piece of work ([`ca_server::memory`]). Without it the RSS after listings of 100,000 certificates
/// stayed between 53 and 64 MB, a third of it free memory kept by the two arenas (BENCHMARKS.md,
/// session 12). glibc's free pages only; done at most every 2 s, never on the request path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn give_back_free_memory() {
    // SAFETY: malloc_trim(3) takes no pointer: it returns free pages of glibc's own arenas to the
    // system, taking each arena's lock itself, so it may run while other threads allocate.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The signer threads' nice value: the lowest priority ([`ca_server::priority`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SIGNER_NICE: libc::c_int = 19;

/// The signer threads' time slice: the longest the kernel takes (Linux 6.12 and later clamp a
/// custom slice to 0.1-100 ms), so that any task waking with the usual slice, PostgreSQL's on the
/// same cores included, runs at once ([`ca_server::priority`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SIGNER_SLICE_NS: u64 = 100_000_000;

/// The `struct sched_attr` of sched_setattr(2) (its first version, 48 bytes; the kernel takes any
/// size from it on).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// Lowers the calling thread's scheduling priority to [`SIGNER_NICE`] and gives it a long time
/// slice ([`SIGNER_SLICE_NS`]), for the library's signer threads ([`ca_server::priority`]). On
/// Linux a nice value is a thread's own: `PRIO_PROCESS` with a thread id sets that thread's alone,
/// as sched_setattr(2) does its policy, nice value and slice. Neither needs a privilege (the
/// priority is lowered, the policy stays `SCHED_OTHER`); should one fail, the thread keeps what it
/// had (a kernel before 6.12 takes the nice value and ignores the slice). A thread started with
/// another policy (the service's `CPUSchedulingPolicy=`) keeps it, with nice 19.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn lower_thread_priority() {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: SIGNER_NICE,
        sched_priority: 0,
        sched_runtime: SIGNER_SLICE_NS,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: gettid(2) and setpriority(2) take no pointer and touch no memory of the process;
    // sched_setattr(2) reads `attr`, a live `struct sched_attr` of the size it carries, and writes
    // nothing. All are called on the thread whose scheduling they change.
    unsafe {
        let tid = libc::gettid();
        if let Ok(id) = libc::id_t::try_from(tid) {
            libc::setpriority(libc::PRIO_PROCESS, id, SIGNER_NICE);
        }
        if libc::sched_getscheduler(0) == libc::SCHED_OTHER {
            libc::syscall(libc::SYS_sched_setattr, tid, &attr as *const SchedAttr, 0u32);
        }
    }
}

/// The cores the process may use, as it started (before any thread was kept on one of them).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
static STARTING_CORES: std::sync::OnceLock<Option<libc::cpu_set_t>> = std::sync::OnceLock::new();

/// The cores the process may use, as it started; `None` when they cannot be read.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn starting_cores() -> Option<libc::cpu_set_t> {
    *STARTING_CORES.get_or_init(|| {
        // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is the calling
        // thread (the main thread: called from `main` before any other thread starts).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
        }
    })
}

/// Keeps the calling thread on the highest-numbered of the starting cores ([`ca_server::priority`]);
/// false when the process may use one core only, or the cores cannot be read or set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn pin_thread() -> bool {
    let Some(cores) = starting_cores() else {
        return false;
    };
    let setsize = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    // SAFETY: CPU_ISSET, CPU_COUNT and CPU_SET read or write the cpu_set_t they are given, within
    // CPU_SETSIZE; sched_setaffinity reads the set of the size passed, for the calling thread (0).
    unsafe {
        if libc::CPU_COUNT(&cores) < 2 {
            return false;
        }
        let Some(core) = (0..setsize).rev().find(|&c| libc::CPU_ISSET(c, &cores)) else {
            return false;
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) == 0
    }
}

/// Lets the calling thread run on every starting core again ([`ca_server::priority`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn unpin_thread() {
    if let Some(cores) = starting_cores() {
        // SAFETY: sched_setaffinity reads the set of the size passed, for the calling thread (0).
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cores);
        }
    }
}

/// The calling thread's CPU time (clock_gettime(2), `CLOCK_THREAD_CPUTIME_ID`): what the CA key's
/// signatures cost, for `/metrics` (`ca_server::ca::signer::signatures`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn thread_cpu_time() -> Option<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one `timespec` into the one it is given, which lives on this
    // stack for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(std::time::Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        ca_server::memory::set_release(give_back_free_memory);
        ca_server::priority::set_lower(lower_thread_priority);
        ca_server::ca::signer::set_thread_cpu_clock(thread_cpu_time);
        if starting_cores().is_some() {
            ca_server::priority::set_placement(ca_server::priority::Placement {
                pin: pin_thread,
                unpin: unpin_thread,
            });
        }
    }
    // `ca-server --generate man|complete-bash|...`: the man page and shell completions (packaging).
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, what] = argv.as_slice() {
        if flag == "--generate" {
            use clap::CommandFactory as _;
            return match ca_server::generate::generate(Args::command(), what, &mut std::io::stdout()) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ca-server: {e:#}");
                    std::process::ExitCode::from(2)
                }
            };
        }
    }
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, with every cause (the path concerned included), no backtrace.
            eprintln!("ca-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// aws-lc seeds its random generator, on first use, from CPU timing jitter as well as the kernel:
/// tens of milliseconds of work once per process. Done on a thread of its own while the CA is opened
/// (its database and its CRL read), instead of after, when the TLS set-up first asks for randomness.
fn warm_up_randomness() {
    use aws_lc_rs::rand::SecureRandom as _;
    let spawned = std::thread::Builder::new().name("rng-warm-up".into()).spawn(|| {
        let mut byte = [0u8; 1];
        if aws_lc_rs::rand::SystemRandom::new().fill(&mut byte).is_err() {
            tracing::warn!("the random generator could not be seeded ahead of time");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %ca_server::error::Chain(&e), "no thread to seed the random generator ahead of time");
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let data_dir_hint = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let config = ca_server::config::find_config(args.config, &data_dir_hint);
    let settings = Settings::load(
        config.as_deref(),
        Overrides {
            data_dir: args.data_dir,
            listen: args.listen,
            certname: args.certname,
            dns_alt_names: args.dns_alt_names,
            key_passphrase_file: args.ca_key_passphrase_file,
            database_url: args.database_url,
        },
        default_data_dir(),
    )?;
    init_logging(settings.json_logs);
    if args.check_config {
        server::load_rules(&settings)?;
        // A passphrase file must be readable (its contents are not shown).
        settings.ca.key_passphrase.read()?;
        println!(
            "configuration OK (data directory {})",
            settings.data_dir.display()
        );
        return Ok(());
    }
    warm_up_randomness();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let authority = server::open_or_setup(&settings, Arc::new(SystemClock)).await?;
        let listeners = server::Listeners::bind(&settings).await?;
        match &settings.database_url {
            Some(url) => tracing::info!(data_dir = %settings.data_dir.display(), database = %ca_server::storage::redact_url(url), "data directory; state in PostgreSQL"),
            None => tracing::info!(data_dir = %settings.data_dir.display(), "data directory; state in its SQLite database"),
        }
        server::serve(settings, authority, listeners, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The log filter unless `RUST_LOG` says otherwise: info, without rustls's warnings about what clients
/// send in their hello (an agent that dials by IP address sends it as SNI: expected, nothing to act on).
const DEFAULT_LOG_FILTER: &str = "info,rustls::msgs::handshake=error";

fn init_logging(json: bool) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("signal received");
}
