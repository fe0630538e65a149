//! The phases, each against any Puppet-compatible CA over HTTPS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::{Method, StatusCode};

use crate::client::{Conn, Target};
use crate::cpu::Meter;
use crate::stats::{figures, Figures};

/// One request to send.
#[derive(Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Req {
        Req {
            method: Method::GET,
            path: path.into(),
            headers: vec![("accept", "text/plain".into())],
            body: Bytes::new(),
        }
    }
    pub fn json(method: Method, path: impl Into<String>, body: String) -> Req {
        Req {
            method,
            path: path.into(),
            headers: vec![
                ("content-type", "application/json".into()),
                ("accept", "application/json".into()),
            ],
            body: Bytes::from(body),
        }
    }
}

/// Sends every request once over `conc` keep-alive connections; counts answers not in `ok` as errors.
pub async fn each(
    t: &Target,
    admin: bool,
    conc: usize,
    reqs: Vec<Req>,
    ok: &[StatusCode],
) -> (Vec<Duration>, Duration, usize) {
    each_on(std::slice::from_ref(t), admin, conc, reqs, ok).await
}

/// [`each`], restarting `meter` once the connections are open: the server's CPU per operation of a
/// keep-alive phase leaves out the handshakes, which have phases of their own.
pub async fn each_metered(
    t: &Target,
    admin: bool,
    conc: usize,
    reqs: Vec<Req>,
    ok: &[StatusCode],
    meter: &mut Meter,
) -> (Vec<Duration>, Duration, usize) {
    each_then(std::slice::from_ref(t), admin, conc, reqs, ok, &mut || {
        meter.restart()
    })
    .await
}

/// [`each`] over several servers: connection `i` goes to `targets[i % targets.len()]`, all of them
/// taking requests from one queue.
pub async fn each_on(
    targets: &[Target],
    admin: bool,
    conc: usize,
    reqs: Vec<Req>,
    ok: &[StatusCode],
) -> (Vec<Duration>, Duration, usize) {
    each_then(targets, admin, conc, reqs, ok, &mut || {}).await
}

/// Opens `conc` keep-alive connections, connection `i` to `targets[i % targets.len()]`, all at once;
/// returns those made and the number that failed.
async fn open(targets: &[Target], admin: bool, conc: usize) -> (Vec<(Target, Conn)>, usize) {
    let mut opening = tokio::task::JoinSet::new();
    for (_, t) in (0..conc.max(1)).zip(targets.iter().cycle()) {
        let t = t.clone();
        opening.spawn(async move {
            let c = t.connect(admin).await;
            (t, c)
        });
    }
    let (mut open, mut failed) = (Vec::new(), 0);
    while let Some(done) = opening.join_next().await {
        match done {
            Ok((t, Ok(c))) => open.push((t, c)),
            _ => failed += 1,
        }
    }
    (open, failed)
}

/// The requests over keep-alive connections opened before the clock starts (and before `ready` is
/// called): the phase's time and its latencies are those of requests, not of TLS handshakes, whose
/// CPU would otherwise land on the first requests (eight RSA-4096 handshakes are about 20 ms of CPU
/// on two cores).
async fn each_then(
    targets: &[Target],
    admin: bool,
    conc: usize,
    reqs: Vec<Req>,
    ok: &[StatusCode],
    ready: &mut (dyn FnMut() + Send),
) -> (Vec<Duration>, Duration, usize) {
    if targets.is_empty() {
        return (Vec::new(), Duration::ZERO, reqs.len());
    }
    let (conns, failed) = open(targets, admin, conc).await;
    let queue = Arc::new(Mutex::new(reqs));
    let errors = Arc::new(AtomicUsize::new(failed));
    ready();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, mut conn) in conns {
        let (queue, errors, ok) = (Arc::clone(&queue), Arc::clone(&errors), ok.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(r) = next else { break };
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                match conn.send(r.method, &r.path, &headers, r.body).await {
                    Ok(reply) if ok.contains(&reply.status) => lat.push(reply.elapsed),
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        match t.connect(admin).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.unwrap_or_default());
    }
    (lat, started.elapsed(), errors.load(Ordering::Relaxed))
}

/// How a timed phase connects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// One keep-alive connection per worker.
    KeepAlive,
    /// A new connection per request, resuming the TLS session.
    Resumed,
    /// A new connection per request, full TLS handshake.
    Full,
}

/// Sends `make(i)` in a loop for `secs` over `conc` workers, connecting as `how` says. Keep-alive
/// connections are opened before the clock starts and `ready` is called (as in [`each_metered`]).
#[allow(clippy::too_many_arguments)]
pub async fn for_duration(
    t: &Target,
    admin: bool,
    conc: usize,
    secs: f64,
    how: Connect,
    make: Arc<dyn Fn(usize) -> Req + Send + Sync>,
    ok: StatusCode,
    ready: &mut (dyn FnMut() + Send),
) -> (Vec<Duration>, Duration, usize) {
    let counter = Arc::new(AtomicUsize::new(0));
    let mut opened: Vec<Option<Conn>> = Vec::new();
    let mut failed = 0;
    if how == Connect::KeepAlive {
        let (conns, f) = open(std::slice::from_ref(t), admin, conc).await;
        opened.extend(conns.into_iter().map(|(_, c)| Some(c)));
        failed = f;
    }
    opened.resize_with(conc.max(1), || None);
    let errors = Arc::new(AtomicUsize::new(failed));
    ready();
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for mut conn in opened {
        let (t, counter, errors, make) = (
            t.clone(),
            Arc::clone(&counter),
            Arc::clone(&errors),
            Arc::clone(&make),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while started.elapsed() < deadline {
                let r = make(counter.fetch_add(1, Ordering::Relaxed));
                let begun = Instant::now();
                if conn.is_none() || how != Connect::KeepAlive {
                    conn = if how == Connect::Full {
                        t.connect_full().await.ok()
                    } else {
                        t.connect(admin).await.ok()
                    };
                }
                let Some(c) = conn.as_mut() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                match c.send(r.method, &r.path, &headers, r.body).await {
                    Ok(reply) if reply.status == ok => lat.push(if how == Connect::KeepAlive {
                        reply.elapsed
                    } else {
                        begun.elapsed()
                    }),
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.unwrap_or_default());
    }
    (lat, started.elapsed(), errors.load(Ordering::Relaxed))
}

/// Figures with the error count in the note.
pub fn report(phase: &str, (lat, wall, errors): (Vec<Duration>, Duration, usize)) -> Figures {
    let mut f = figures(phase, lat, wall);
    if errors > 0 {
        f.note = format!("{errors} errors");
    }
    f
}

/// EC P-256 CSRs for `prefix-N` names (the agent side's cost, made before timing).
pub fn make_csrs(prefix: &str, n: usize) -> Result<Vec<(String, String)>, String> {
    Ok(make_agents(prefix, n)?
        .into_iter()
        .map(|a| (a.name, a.csr_pem))
        .collect())
}

/// An agent's name, CSR and private key (PEM).
pub struct Agent {
    pub name: String,
    pub csr_pem: String,
    pub key_pem: String,
}

/// EC P-256 keys and CSRs for `prefix-N` names.
pub fn make_agents(prefix: &str, n: usize) -> Result<Vec<Agent>, String> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}-{i:06}.bench.test");
            let key =
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
            let mut p = rcgen::CertificateParams::default();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.as_str());
            let csr_pem = p
                .serialize_request(&key)
                .map_err(|e| e.to_string())?
                .pem()
                .map_err(|e| e.to_string())?;
            Ok(Agent {
                name,
                csr_pem,
                key_pem: key.serialize_pem(),
            })
        })
        .collect()
}

pub fn submit_reqs(csrs: &[(String, String)]) -> Vec<Req> {
    csrs.iter()
        .map(|(n, pem)| Req {
            method: Method::PUT,
            path: format!("/puppet-ca/v1/certificate_request/{n}"),
            headers: vec![("content-type", "text/plain".into())],
            body: Bytes::from(pem.clone()),
        })
        .collect()
}

pub fn status_reqs(names: &[String], state: &str) -> Vec<Req> {
    names
        .iter()
        .map(|n| {
            Req::json(
                Method::PUT,
                format!("/puppet-ca/v1/certificate_status/{n}"),
                format!("{{\"desired_state\":\"{state}\"}}"),
            )
        })
        .collect()
}
