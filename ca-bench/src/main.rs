//! `ca-bench`: drives a Puppet-compatible CA over HTTPS and prints, per phase, count, ops/s and p50/p99
//! latency, every signing figure as a ratio to the raw signing rate of the CA's key type measured in the
//! same run on the same machine (the physical ceiling).
//!
//! Without `--server` it sets up and starts its own `ca-server` (the binary next to it) and also
//! measures cold start, RSS, revoke latency as the CRL grows and listing at 100,000 certificates. With
//! `--database-url` it then does the same on PostgreSQL, starts replicas there and measures signing
//! spread over them and how fast a revocation on one is in force on another.

// A load generator: it waits for the processes it starts and dates its own test certificates by the
// real clock.
#![allow(clippy::disallowed_methods)]

mod ceiling;
mod client;
mod cpu;
mod local;
mod pg;
mod phases;
mod replicas;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hyper::{Method, StatusCode};

use ca_server::ca::keys::KeyType;

use crate::client::Target;
use crate::local::OwnServer;
use crate::phases::{
    each, each_metered, for_duration, make_csrs, report, status_reqs, submit_reqs, Connect, Req,
};
use crate::stats::{header, line, Figures};

#[derive(Debug, Parser)]
#[command(
    name = "ca-bench",
    about = "Benchmark a Puppet-compatible CA over HTTPS against the CA key's signing ceiling"
)]
struct Args {
    /// A running CA (https://host:port). Without it, ca-bench starts its own ca-server.
    #[arg(long)]
    server: Option<String>,
    /// CA bundle of --server.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Admin client certificate (pp_cli_auth) for --server.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Key type of the CA ca-bench sets up: rsa-4096, rsa-2048, ec-p256.
    #[arg(long, default_value = "rsa-4096")]
    key_type: String,
    /// Key type of the server's TLS certificate (default: --key-type).
    #[arg(long)]
    server_key_type: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// CSRs per signing phase.
    #[arg(long, default_value_t = 1000)]
    csrs: usize,
    /// Certificates in the CA for the listing and cold-start phases (own server only).
    #[arg(long, default_value_t = 100_000)]
    list_size: usize,
    /// CRL sizes at which revoke latency is measured (own server only).
    #[arg(long, value_delimiter = ',', default_value = "0,1000,10000,100000")]
    revoke_sizes: Vec<usize>,
    /// An empty PostgreSQL database (postgresql://user@host/db) of the benchmark's own: after the
    /// SQLite run, the own-server phases run again with the CA's state there, then the replica phases.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Before the PostgreSQL run, drop the database's current schema (public) with everything in it and
    /// create it again. Only for a database dedicated to ca-bench (one holding a previous run's CA);
    /// refused when other schemas hold tables.
    #[arg(long, requires = "database_url")]
    reset_database: bool,
    /// ca-server replicas on the PostgreSQL database for the replica phases (default 2; 1: none).
    #[arg(long, requires = "database_url")]
    replicas: Option<usize>,
    /// Revocations on replica A timed until replica B enforces them (propagation).
    #[arg(long, default_value_t = 200)]
    propagation_samples: usize,
    /// Also write the run as JSON to this file: the ceilings, the CPU time of one raw signature,
    /// and every phase with its id (`submit`, `sign`, `bulk`, `revoke_0`, ..., `list_all`,
    /// `cold_start`, `rss_idle`, `rss_peak`), count, ops/s, p50/p99, ratio, the server's CPU time
    /// per operation and RSS.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// A PKCS#11 module: after the run with the CA key in a file, the own-server phases run again
    /// with the CA key made in the token `--pkcs11-token` (`hsm` in the backend column). Its own
    /// environment (SOFTHSM2_CONF for SoftHSM) is passed on; scripts/bench-hsm sets up a SoftHSM token.
    #[arg(long, value_name = "PATH", requires_all = ["pkcs11_token", "pkcs11_pin_file"])]
    pkcs11_module: Option<PathBuf>,
    /// The token's label.
    #[arg(long, value_name = "LABEL")]
    pkcs11_token: Option<String>,
    /// A file with the token's user PIN.
    #[arg(long, value_name = "FILE")]
    pkcs11_pin_file: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ca-bench: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("ca-bench: {e}");
        std::process::exit(1);
    }
}

fn read(p: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The signing ceiling before the run: (one core, all cores), printed.
fn measure_ceiling(kind: KeyType, cores: usize) -> Result<(f64, f64), String> {
    println!("measuring the ceiling: raw {kind} signatures on {cores} threads ...");
    let per_core = ceiling::raw_sign_rate(kind, 1, 2.0)?;
    let all_cores = ceiling::raw_sign_rate(kind, cores, 2.0)?;
    println!(
        "ceiling: {per_core:.0} signatures/s on one core, {all_cores:.0}/s on {cores} cores (CA key {kind})"
    );
    Ok((per_core, all_cores))
}

/// A signing figure: the rate is kept here and divided by the ceiling at the end, once it was measured
/// again.
fn ratio(mut f: Figures) -> Figures {
    f.ratio = Some(f.per_sec);
    f
}

fn admin_target(s: &OwnServer) -> Result<Target, String> {
    Target::new("localhost", s.port, &s.ca_pem, (&s.admin_cert, &s.admin_key))
}

async fn run(args: Args) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "ca-bench: {} cores; concurrency {}; {} s per timed phase",
        cores, args.concurrency, args.duration
    );
    if args.server.is_some() && args.database_url.is_some() {
        return Err("--database-url is for ca-bench's own server, not with --server".into());
    }
    if args.replicas == Some(0) {
        return Err("--replicas must be at least 1".into());
    }
    if args.csrs == 0 {
        return Err("--csrs must be at least 1".into());
    }
    if !(args.duration.is_finite() && (0.0..=86_400.0).contains(&args.duration)) {
        return Err("--duration must be a number of seconds from 0 to 86400".into());
    }
    let mut rows: Vec<Figures> = Vec::new();
    let (kind, per_core, all_cores) = match &args.server {
        Some(url) => {
            let (cacert, cert, key) = match (&args.cacert, &args.cert, &args.key) {
                (Some(a), Some(b), Some(c)) => (read(a)?, read(b)?, read(c)?),
                _ => return Err("--server needs --cacert, --cert and --key (an admin certificate)".into()),
            };
            let rest = url
                .strip_prefix("https://")
                .ok_or("--server must be https://host:port")?;
            let (host, port) = rest
                .trim_end_matches('/')
                .rsplit_once(':')
                .ok_or("--server needs a port")?;
            let port: u16 = port.parse().map_err(|_| "bad port")?;
            let target = Target::new(host, port, &cacert, (&cert, &key))?;
            let kind = ceiling::key_type_of(&cacert)?;
            let (per_core, all_cores) = measure_ceiling(kind, cores)?;
            let yardstick = ca_server::ca::keys::generate(kind).map_err(|e| e.to_string())?;
            rows.extend(https_phases(&args, &target, None, None, &yardstick).await?.0);
            (kind, per_core, all_cores)
        }
        None => {
            let kind = args
                .key_type
                .parse()
                .map_err(|e: ca_server::ca::CaError| e.to_string())?;
            let server_kind = match &args.server_key_type {
                Some(k) => k.parse().map_err(|e: ca_server::ca::CaError| e.to_string())?,
                None => kind,
            };
            // The database is checked (and reset, when asked) before the SQLite run, so that a wrong
            // URL or a database in use is refused at once, not after it.
            if let Some(url) = &args.database_url {
                pg::prepare(url, args.reset_database).await?;
            }
            let mut server = OwnServer::start(kind, server_kind, None, None).await?;
            rows.push(
                server
                    .cold_start_row("cold start, empty CA (to first request)")
                    .id("cold_start"),
            );
            let kind = ceiling::key_type_of(&server.ca_pem)?;
            let (per_core, all_cores) = measure_ceiling(kind, cores)?;
            rows.extend(own_phases(&args, &mut server, None).await?);
            drop(server);
            for r in &mut rows {
                r.backend = "sqlite";
            }
            if let Some(url) = &args.database_url {
                rows.extend(postgres_run(&args, url, kind, server_kind).await?);
            }
            if let (Some(module), Some(token), pin_file) =
                (&args.pkcs11_module, &args.pkcs11_token, &args.pkcs11_pin_file)
            {
                let p = ca_server::ca::token::Pkcs11Settings {
                    module: module.clone(),
                    token_label: token.clone(),
                    key_label: format!("ca-bench-{}", std::process::id()),
                    pin_file: pin_file.clone(),
                };
                println!("the same phases with the CA key in the PKCS#11 token '{token}' ...");
                let mut server = OwnServer::start(kind, server_kind, None, Some(&p)).await?;
                let mut hsm = vec![server
                    .cold_start_row("cold start, empty CA (to first request)")
                    .id("cold_start")];
                hsm.extend(own_phases(&args, &mut server, None).await?);
                for r in &mut hsm {
                    r.backend = "hsm";
                }
                rows.extend(hsm);
            }
            (kind, per_core, all_cores)
        }
    };

    // Measured again after the run, on the same (now idle) cores: the higher of the two is the
    // yardstick, so that a disturbance during one measurement cannot flatter the ratios.
    let again = ceiling::raw_sign_rate(kind, cores, 2.0)?;
    let ceiling = all_cores.max(again);
    for r in &mut rows {
        r.ratio = r.ratio.map(|rate| rate / ceiling);
    }
    let backends = args.database_url.is_some() || args.pkcs11_module.is_some();
    println!();
    println!("{}", header(backends));
    for r in &rows {
        println!("{}", line(r, backends));
    }
    println!();
    let accounts: Vec<String> = rows
        .iter()
        .filter_map(|r| stats::account(r, cores, backends))
        .collect();
    if !accounts.is_empty() {
        println!(
            "where the time of the signing phases goes, per certificate (ms of CPU time on {cores} cores):"
        );
        for a in accounts {
            println!("  {a}");
        }
        println!();
    }
    let signature_ms = 1000.0 / per_core.max(1e-9);
    println!(
        "ceiling: {ceiling:.0} raw {kind} signatures/s on {cores} cores (before the run {all_cores:.0}/s, \
         after {again:.0}/s; {per_core:.0}/s on one); ratio = ops/s ÷ ceiling"
    );
    println!(
        "srv CPU ms = the server process's CPU time per operation (from /proc); one raw {kind} signature \
         takes {signature_ms:.3} ms of CPU on this machine"
    );
    if let Some(path) = &args.json {
        let run = serde_json::json!({
            "key_type": kind.to_string(),
            "cores": cores,
            "ceiling_per_s": ceiling,
            "ceiling_per_s_one_core": per_core,
            "signature_cpu_ms": signature_ms,
            "concurrency": args.concurrency,
            "phases": rows.iter().map(Figures::json).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&run).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("written: {}", path.display());
    }
    Ok(())
}

/// The own-server phases again with the CA's state in PostgreSQL, the replica phases among them.
async fn postgres_run(
    args: &Args,
    url: &str,
    kind: KeyType,
    server_kind: KeyType,
) -> Result<Vec<Figures>, String> {
    let replicas = args.replicas.unwrap_or(2);
    println!(
        "PostgreSQL run on {} with {replicas} replica(s) ...",
        ca_server::storage::redact_url(url)
    );
    // Still empty (it was checked, or reset, before the SQLite run).
    pg::prepare(url, false).await?;
    let mut server = OwnServer::start(kind, server_kind, Some(url), None).await?;
    let mut rows = vec![server
        .cold_start_row("cold start, empty CA (to first request)")
        .id("cold_start")];
    let plan = (replicas > 1).then_some(Replicas {
        count: replicas,
        kind,
        server_kind,
    });
    rows.extend(own_phases(args, &mut server, plan).await?);
    for r in &mut rows {
        r.backend = "pg";
    }
    Ok(rows)
}

/// Replicas to start for the replica phases (the own server is the first).
struct Replicas {
    count: usize,
    kind: KeyType,
    server_kind: KeyType,
}

/// The phases against any CA over HTTPS; also the names signed per certificate.
async fn https_phases(
    args: &Args,
    target: &Target,
    server: Option<u32>,
    postmaster: Option<u32>,
    yardstick: &rcgen::KeyPair,
) -> Result<(Vec<Figures>, Vec<String>), String> {
    let mut rows = Vec::new();
    // The ceiling again right before and right after each signing phase (1 s each, with
    // `yardstick`, a key of the CA's type): this machine's signing speed drifts by 10-20 % within a
    // minute.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sample = || ceiling::raw_sign_rate_with(yardstick, cores, 1.0);
    // The server's CPU time per operation of each phase.
    let mut meter = cpu::Meter::new(server).with_postgres(postmaster);
    let c = args.concurrency;
    let run_id = std::process::id();
    let csrs = make_csrs(&format!("a{run_id}"), args.csrs)?;
    let names: Vec<String> = csrs.iter().map(|(n, _)| n.clone()).collect();
    let submitted = report(
        "CSR submit (PUT certificate_request)",
        each_metered(
            target,
            false,
            c,
            submit_reqs(&csrs),
            &[StatusCode::OK],
            &mut meter,
        )
        .await,
    );
    rows.push(meter.done(submitted, "submit"));
    let before_sign = sample();
    let counters_before = server_counters(target).await;
    let signed = report(
        "sign via certificate_status PUT",
        each_metered(
            target,
            true,
            c,
            status_reqs(&names, "signed"),
            &[StatusCode::NO_CONTENT],
            &mut meter,
        )
        .await,
    );
    let mut signed = meter.done(ratio(signed), "sign");
    counted(&mut signed, counters_before, server_counters(target).await, cores);
    let between = sample();
    signed.ceiling_around = Some((before_sign, between));
    rows.push(signed);

    let bulk = make_csrs(&format!("b{run_id}"), args.csrs)?;
    each(target, false, c, submit_reqs(&bulk), &[StatusCode::OK]).await;
    let bulk_names: Vec<String> = bulk.iter().map(|(n, _)| n.clone()).collect();
    let counters_before = server_counters(target).await;
    let body = serde_json::json!({ "certnames": bulk_names }).to_string();
    let (lat, wall, err) = each_metered(
        target,
        true,
        1,
        vec![Req::json(Method::POST, "/puppet-ca/v1/sign", body)],
        &[StatusCode::OK],
        &mut meter,
    )
    .await;
    let mut f = report("bulk sign (POST /sign, one request)", (lat, wall, err));
    f.count = bulk_names.len();
    f.per_sec = bulk_names.len() as f64 / wall.as_secs_f64();
    let mut f = meter.done(ratio(f), "bulk");
    counted(&mut f, counters_before, server_counters(target).await, cores);
    f.ceiling_around = Some((between, sample()));
    rows.push(f);

    let fetch_names = Arc::new(names.clone());
    let make: Arc<dyn Fn(usize) -> Req + Send + Sync> = Arc::new(move |i| {
        Req::get(format!(
            "/puppet-ca/v1/certificate/{}",
            fetch_names[i % fetch_names.len()]
        ))
    });
    rows.push(
        timed(
            args,
            target,
            &mut meter,
            "certificate fetch (keep-alive)",
            "cert_fetch",
            Connect::KeepAlive,
            make,
            StatusCode::OK,
        )
        .await,
    );
    let crl_path = "/puppet-ca/v1/certificate_revocation_list/ca";
    let crl = Arc::new(move |_| Req::get(crl_path));
    rows.push(
        timed(
            args,
            target,
            &mut meter,
            "CRL GET 200 (keep-alive)",
            "crl_get",
            Connect::KeepAlive,
            crl,
            StatusCode::OK,
        )
        .await,
    );
    let ims = httpdate_now();
    let crl304: Arc<dyn Fn(usize) -> Req + Send + Sync> = Arc::new(move |_| {
        let mut r = Req::get(crl_path);
        r.headers.push(("if-modified-since", ims.clone()));
        r
    });
    rows.push(
        timed(
            args,
            target,
            &mut meter,
            "CRL GET 304 If-Modified-Since (keep-alive)",
            "crl_304",
            Connect::KeepAlive,
            crl304,
            StatusCode::NOT_MODIFIED,
        )
        .await,
    );
    rows.extend(ocsp_phases(args, target, &names[0], &mut meter).await?);
    let status: Arc<dyn Fn(usize) -> Req + Send + Sync> = Arc::new(|_| Req::get("/status/v1/simple"));
    rows.push(
        timed(
            args,
            target,
            &mut meter,
            "new TLS connection per request (resumed)",
            "tls_resumed",
            Connect::Resumed,
            Arc::clone(&status),
            StatusCode::OK,
        )
        .await,
    );
    rows.push(
        timed(
            args,
            target,
            &mut meter,
            "new TLS connection per request (full handshake)",
            "tls_full",
            Connect::Full,
            status,
            StatusCode::OK,
        )
        .await,
    );
    meter.restart();
    let all = listing(target, "certificate_statuses (all)", "").await;
    rows.push(meter.done(all, "list_all"));
    Ok((rows, names))
}

/// The HTTPS phases against ca-bench's own server, then those that need its process and database:
/// RSS, revoke latency as the CRL grows, (with `replicas`) the replica phases, listing at
/// `--list-size` certificates and the cold start with them.
async fn own_phases(
    args: &Args,
    server: &mut OwnServer,
    replicas: Option<Replicas>,
) -> Result<Vec<Figures>, String> {
    let target = admin_target(server)?;
    let mut rows = vec![server.rss_row("RSS idle (MB in ops/s column)").id("rss_idle")];
    let sampler = server.rss_sampler();
    let kind = ceiling::key_type_of(&server.ca_pem)?;
    // A key of the CA's type, made once (an RSA-4096 key takes up to seconds): the yardstick of the
    // signing phases and of the revocations.
    let raw_key = ca_server::ca::keys::generate(kind).map_err(|e| e.to_string())?;
    let postmaster = match server.database_url() {
        Some(url) => pg::postmaster_pid(url).await,
        None => None,
    };
    let (https, names) = https_phases(args, &target, Some(server.pid()), postmaster, &raw_key).await?;
    rows.extend(https);
    rows.push(
        sampler
            .finish("RSS peak under load (MB in ops/s column)")
            .id("rss_peak"),
    );

    let run_id = std::process::id();
    // Revoke latency as the CRL grows: revoked entries are seeded into the database between steps.
    // Up to 250 revocations per size (a p99 of 100 samples is the second-worst, one stall), fewer
    // when --csrs does not give 250 for each.
    let per_size = 250.min(names.len() / args.revoke_sizes.len().max(1)).max(1);
    let mut victims = names;
    for &size in &args.revoke_sizes {
        server.seed_revocations(size).await?;
        // The machine's own p99 for one signature at the revocations' pace, right before them.
        let (lat, wall) = ceiling::serial_sign_latencies(&raw_key, per_size, Duration::from_millis(1))?;
        let mut raw = report("raw signature, serial (machine's p99)", (lat, wall, 0));
        raw.note = format!("{kind}, no server, 1 ms pauses");
        rows.push(raw.id(format!("raw_sign_serial_{size}")));
        let batch: Vec<String> = victims.drain(..victims.len().min(per_size)).collect();
        let mut meter = cpu::Meter::new(Some(server.pid()));
        let f = report(
            &format!("revoke at {size} CRL entries (serial)"),
            each_metered(
                &target,
                true,
                1,
                status_reqs(&batch, "revoked"),
                &[StatusCode::NO_CONTENT],
                &mut meter,
            )
            .await,
        );
        rows.push(meter.done(f, &format!("revoke_{size}")));
    }
    if let Some(plan) = replicas {
        rows.extend(replica_phases(args, server, &plan).await?);
    }
    server.seed_certificates(args.list_size).await?;
    let pending = make_csrs(&format!("p{run_id}"), 10)?;
    each(&target, false, 2, submit_reqs(&pending), &[StatusCode::OK]).await;
    let mut meter = cpu::Meter::new(Some(server.pid()));
    let sampler = server.rss_sampler();
    let big = listing(
        &target,
        &format!("certificate_statuses, {} certs", args.list_size),
        "",
    )
    .await;
    rows.push(meter.done(big, &format!("list_all_{}", args.list_size)));
    rows.push(
        sampler
            .finish("  RSS peak while listing (MB in ops/s column)")
            .id(format!("rss_listing_peak_{}", args.list_size)),
    );
    let requested = listing(&target, "  ?state=requested (10 pending)", "?state=requested").await;
    rows.push(meter.done(requested, "list_requested"));
    match server.cli_list_all(&format!("  ca list --all (local mode), {} certs", args.list_size)) {
        Ok(f) => rows.push(f.id(format!("cli_list_all_{}", args.list_size))),
        Err(e) => eprintln!("ca list --all: {e}"),
    }
    // Memory given back: a second for the allocator to return what the listings freed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.push(
        server
            .rss_row("  RSS after the listings (MB in ops/s column)")
            .id(format!("rss_after_listings_{}", args.list_size)),
    );
    server.restart().await?;
    rows.push(
        server
            .cold_start_row(&format!(
                "cold start, {} certs (to first request)",
                args.list_size
            ))
            .id(format!("cold_start_{}", args.list_size)),
    );
    rows.push(
        server
            .rss_row("RSS idle after restart (MB in ops/s column)")
            .id(format!("rss_idle_{}", args.list_size)),
    );
    server.stop();
    Ok(rows)
}

/// Replicas join the own server's database, the replica phases run on all of them, and the joined
/// ones stop again (the later phases measure the own server alone, as on SQLite).
async fn replica_phases(args: &Args, first: &OwnServer, plan: &Replicas) -> Result<Vec<Figures>, String> {
    let mut joined = Vec::new();
    let mut starts = Vec::new();
    for i in 2..=plan.count {
        let r = OwnServer::join(
            first,
            &format!("replica-{i}.bench.test"),
            plan.kind,
            plan.server_kind,
        )
        .await?;
        starts.push(r.cold_start());
        joined.push(r);
    }
    let mut joining = report(
        "replica join, cold start (to first request)",
        (starts, Duration::ZERO, 0),
    );
    joining.per_sec = 0.0;
    joining.note = "ms in p50/p99; issues its server certificate".into();
    let mut rows = vec![joining];
    let mut all = vec![first];
    all.extend(joined.iter());
    let postmaster = match first.database_url() {
        Some(url) => pg::postmaster_pid(url).await,
        None => None,
    };
    let phases = replicas::Plan {
        concurrency: args.concurrency,
        csrs: args.csrs,
        samples: args.propagation_samples,
        run_id: std::process::id(),
        postmaster,
    };
    rows.extend(replicas::phases(&all, &phases).await?);
    drop(joined);
    Ok(rows)
}

/// OCSP for the certificate of `name`: answers kept by the server (requests without a nonce, as
/// nginx's stapling sends) and answers signed for each request (a nonce each, as `openssl ocsp`).
async fn ocsp_phases(
    args: &Args,
    target: &Target,
    name: &str,
    meter: &mut cpu::Meter,
) -> Result<Vec<Figures>, String> {
    let mut conn = target.connect(false).await?;
    let mut pem_of = async |path: &str| -> Result<Vec<u8>, String> {
        let r = conn
            .send(
                Method::GET,
                path,
                &[("accept", "text/plain")],
                hyper::body::Bytes::new(),
            )
            .await?;
        if r.status != StatusCode::OK {
            return Err(format!("{path}: {}", r.status));
        }
        Ok(pem::parse(&r.body[..])
            .map_err(|e| format!("{path}: {e}"))?
            .into_contents())
    };
    let ca = pem_of("/puppet-ca/v1/certificate/ca").await?;
    let cert = pem_of(&format!("/puppet-ca/v1/certificate/{name}")).await?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).map_err(|e| e.to_string())?;
    let serial = u64::try_from(parsed.serial.clone()).map_err(|_| "serial too large")?;
    let kept = hyper::body::Bytes::from(
        ca_server::ca::ocsp::request_der(&ca, serial, None).map_err(|e| e.to_string())?,
    );
    let ocsp_req = |body: hyper::body::Bytes| Req {
        method: Method::POST,
        path: "/ocsp".into(),
        headers: vec![("content-type", "application/ocsp-request".into())],
        body,
    };
    let mut rows = Vec::new();
    let make: Arc<dyn Fn(usize) -> Req + Send + Sync> = Arc::new(move |_| ocsp_req(kept.clone()));
    rows.push(
        timed(
            args,
            target,
            meter,
            "OCSP (kept answer, no nonce; keep-alive)",
            "ocsp_kept",
            Connect::KeepAlive,
            make,
            StatusCode::OK,
        )
        .await,
    );
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let make: Arc<dyn Fn(usize) -> Req + Send + Sync> = Arc::new(move |_| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let der = ca_server::ca::ocsp::request_der(&ca, serial, Some(&n.to_be_bytes())).unwrap_or_default();
        ocsp_req(hyper::body::Bytes::from(der))
    });
    rows.push(
        timed(
            args,
            target,
            meter,
            "OCSP (nonce: signed per request; keep-alive)",
            "ocsp_nonce",
            Connect::KeepAlive,
            make,
            StatusCode::OK,
        )
        .await,
    );
    Ok(rows)
}

/// A phase of `make`'s requests for `--duration` over `--concurrency` workers, connecting as `how`
/// says, each answered `ok`: its figures with its id and the server's CPU per request (`meter`,
/// started once any keep-alive connections are open).
#[allow(clippy::too_many_arguments)]
async fn timed(
    args: &Args,
    target: &Target,
    meter: &mut cpu::Meter,
    phase: &str,
    id: &str,
    how: Connect,
    make: Arc<dyn Fn(usize) -> Req + Send + Sync>,
    ok: StatusCode,
) -> Figures {
    let f = report(
        phase,
        for_duration(
            target,
            false,
            args.concurrency,
            args.duration,
            how,
            make,
            ok,
            &mut || meter.restart(),
        )
        .await,
    );
    meter.done(f, id)
}

/// Counters of the server's `/metrics`, read before and after a signing phase; each `None` when the
/// server does not give it (another CA).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// The signing rounds so far: their number and their time in all (s).
    rounds: Option<(u64, f64)>,
    /// The CA key's signatures so far: their number and the CPU time spent in them (s).
    signatures: Option<(u64, f64)>,
}

async fn server_counters(t: &Target) -> Counters {
    let Some(text) = metrics_text(t).await else {
        return Counters::default();
    };
    let value = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let pair = |count: &str, sum: &str| Some((value(count)? as u64, value(sum)?));
    Counters {
        rounds: pair("ca_signing_round_seconds_count", "ca_signing_round_seconds_sum"),
        signatures: pair("ca_key_signatures_total", "ca_key_signature_cpu_seconds_total"),
    }
}

async fn metrics_text(t: &Target) -> Option<String> {
    let mut c = t.connect(false).await.ok()?;
    let reply = c
        .send(Method::GET, "/metrics", &[], Default::default())
        .await
        .ok()
        .filter(|r| r.status == StatusCode::OK)?;
    Some(String::from_utf8_lossy(&reply.body).into_owned())
}

/// What a signing phase adds to its figures from the counters read around it: its rounds, and its
/// signatures' CPU time, from which the ceiling at the machine's speed during the phase (`cores`
/// signatures at a time, each taking the CPU time one took during the phase).
fn counted(f: &mut stats::Figures, before: Counters, after: Counters, cores: usize) {
    let between = |a: Option<(u64, f64)>, b: Option<(u64, f64)>| {
        let ((n0, s0), (n1, s1)) = (a?, b?);
        Some((n1.checked_sub(n0)?, (s1 - s0).max(0.0)))
    };
    f.rounds = between(before.rounds, after.rounds);
    f.signatures = between(before.signatures, after.signatures).filter(|&(n, cpu)| n > 0 && cpu > 0.0);
    f.ceiling_at_speed = f.signatures.map(|(n, cpu)| cores as f64 * n as f64 / cpu);
}

async fn listing(t: &Target, phase: &str, query: &str) -> Figures {
    let reqs: Vec<Req> = (0..3)
        .map(|_| {
            let mut r = Req::get(format!("/puppet-ca/v1/certificate_statuses/any{query}"));
            r.headers = vec![("accept", "application/json".into())];
            r
        })
        .collect();
    let started = Instant::now();
    let out = each(t, true, 1, reqs, &[StatusCode::OK]).await;
    let mut f = report(phase, out);
    f.per_sec = f.count as f64 / started.elapsed().as_secs_f64();
    f
}

fn httpdate_now() -> String {
    // An If-Modified-Since safely after the CRL's publication: one hour ahead.
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    dt.format(&fmt).unwrap_or_default()
}
