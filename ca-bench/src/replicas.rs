//! The replica phases (PostgreSQL): signing spread over every replica, with the CPU of all of them (and
//! of PostgreSQL) shown; and propagation, how long after replica A acknowledged a revocation replica B
//! refuses the certificate on a new TLS handshake, and serves a CRL that lists it.

use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use x509_parser::num_bigint::BigUint;

use crate::client::{Conn, Reply, Target};
use crate::cpu::CpuWatch;
use crate::local::OwnServer;
use crate::phases::{each, each_on, make_agents, make_csrs, report, status_reqs, submit_reqs, Req};
use crate::stats::{figures, Figures};

const CRL_PATH: &str = "/puppet-ca/v1/certificate_revocation_list/ca";
/// A propagation that takes longer is counted as an error.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Between two polls of replica B.
const POLL_PAUSE: Duration = Duration::from_millis(1);

/// What the replica phases take from the command line.
pub struct Plan {
    pub concurrency: usize,
    pub csrs: usize,
    pub samples: usize,
    pub run_id: u32,
    /// The PostgreSQL server's main process, when it runs here (for its CPU).
    pub postmaster: Option<u32>,
}

fn admin_target(s: &OwnServer) -> Result<Target, String> {
    Target::new("localhost", s.port, &s.ca_pem, (&s.admin_cert, &s.admin_key))
}

/// The signing figure's rate, divided by the ceiling at the end.
fn for_ratio(mut f: Figures) -> Figures {
    f.ratio = Some(f.per_sec);
    f
}

fn with_note(mut f: Figures, note: String) -> Figures {
    f.note = if f.note.is_empty() {
        note
    } else {
        format!("{}; {note}", f.note)
    };
    f
}

/// Every replica phase; `servers[0]` is replica A, `servers[1]` replica B.
pub async fn phases(servers: &[&OwnServer], plan: &Plan) -> Result<Vec<Figures>, String> {
    let targets: Vec<Target> = servers
        .iter()
        .map(|s| admin_target(s))
        .collect::<Result<_, _>>()?;
    let pids: Vec<u32> = servers.iter().map(|s| s.pid()).collect();
    let n = servers.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let c = plan.concurrency;
    let mut rows = Vec::new();

    // One request per certificate: the connections are spread over the replicas.
    let csrs = make_csrs(&format!("r{}", plan.run_id), plan.csrs)?;
    let names: Vec<String> = csrs.iter().map(|(n, _)| n.clone()).collect();
    rows.push(report(
        &format!("CSR submit, spread over {n} replicas"),
        each_on(&targets, false, c, submit_reqs(&csrs), &[StatusCode::OK]).await,
    ));
    let cpu = CpuWatch::start(pids.clone(), plan.postmaster);
    let signed = report(
        &format!("sign via certificate_status PUT, {n} replicas"),
        each_on(
            &targets,
            true,
            c,
            status_reqs(&names, "signed"),
            &[StatusCode::NO_CONTENT],
        )
        .await,
    );
    rows.push(with_note(for_ratio(signed), cpu.note()));

    // Bulk: one POST /sign per replica at once, each with its share of the names.
    let bulk = make_csrs(&format!("s{}", plan.run_id), plan.csrs)?;
    each_on(&targets, false, c, submit_reqs(&bulk), &[StatusCode::OK]).await;
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); n];
    for (i, (name, _)) in bulk.iter().enumerate() {
        if let Some(s) = shares.get_mut(i % n) {
            s.push(name.clone());
        }
    }
    let cpu = CpuWatch::start(pids, plan.postmaster);
    let started = Instant::now();
    let tasks: Vec<_> = targets
        .iter()
        .zip(shares)
        .map(|(t, share)| {
            let t = t.clone();
            let body = serde_json::json!({ "certnames": share }).to_string();
            tokio::spawn(async move {
                each(
                    &t,
                    true,
                    1,
                    vec![Req::json(Method::POST, "/puppet-ca/v1/sign", body)],
                    &[StatusCode::OK],
                )
                .await
            })
        })
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok((l, _, e)) => {
                lat.extend(l);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let wall = started.elapsed();
    let mut f = report(
        &format!("bulk sign, {n} replicas (one POST /sign each)"),
        (lat, wall, errors),
    );
    f.count = bulk.len();
    f.per_sec = bulk.len() as f64 / wall.as_secs_f64().max(1e-9);
    rows.push(with_note(for_ratio(f), cpu.note()));

    if let (Some(a), Some(b)) = (servers.first(), servers.get(1)) {
        rows.extend(propagation(a, b, plan).await?);
    }
    Ok(rows)
}

/// A keep-alive connection, opened again after an error.
struct Session {
    target: Target,
    admin: bool,
    conn: Option<Conn>,
}

impl Session {
    fn new(target: Target, admin: bool) -> Session {
        Session {
            target,
            admin,
            conn: None,
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, String> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.target.connect(self.admin).await?,
        };
        let reply = conn
            .send(method, path, headers, Bytes::from(body.to_string()))
            .await?;
        self.conn = Some(conn);
        Ok(reply)
    }
}

/// The serial of a PEM certificate.
fn serial_of(cert_pem: &[u8]) -> Result<BigUint, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = pem::parse(cert_pem).map_err(|e| e.to_string())?.into_contents();
    let (_, c) = X509Certificate::from_der(&der).map_err(|e| e.to_string())?;
    Ok(c.serial.clone())
}

/// The revoked serials of the first CRL of a PEM CRL chain (the signing CA's).
fn crl_serials(chain_pem: &[u8]) -> Result<Vec<BigUint>, String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let blocks = pem::parse_many(chain_pem).map_err(|e| e.to_string())?;
    let first = blocks
        .iter()
        .find(|b| b.tag() == "X509 CRL")
        .ok_or("no CRL in the answer")?;
    let (_, crl) = CertificateRevocationList::from_der(first.contents()).map_err(|e| e.to_string())?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| r.user_certificate.clone())
        .collect())
}

fn lists(chain_pem: &[u8], serial: &BigUint) -> bool {
    crl_serials(chain_pem).is_ok_and(|s| s.contains(serial))
}

/// Whether `agent` (a target with the agent's certificate as identity) is accepted on a new, full
/// TLS handshake: Some(true) accepted, Some(false) refused (the handshake fails, or 401/403).
async fn handshake_accepted(agent: &Target) -> Option<bool> {
    let Ok(mut conn) = agent.connect_full_as_identity().await else {
        return Some(false);
    };
    match conn
        .send(
            Method::GET,
            "/puppet-ca/v1/expirations",
            &[("accept", "application/json")],
            Bytes::new(),
        )
        .await
    {
        Err(_) => Some(false),
        Ok(r) if r.status == StatusCode::OK => Some(true),
        Ok(r) if r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED => Some(false),
        Ok(_) => None,
    }
}

/// From `acked` until a new handshake with `agent` fails; None after [`GIVE_UP`].
async fn until_refused(agent: &Target, acked: Instant) -> Option<Duration> {
    while acked.elapsed() < GIVE_UP {
        if handshake_accepted(agent).await == Some(false) {
            return Some(acked.elapsed());
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    None
}

/// From `acked` until B's CRL lists `serial`, asking with If-Modified-Since the last CRL seen (an
/// unchanged CRL costs a 304); None after [`GIVE_UP`].
async fn until_listed(
    crl: &mut Session,
    mut last_modified: Option<String>,
    serial: &BigUint,
    acked: Instant,
) -> Option<Duration> {
    while acked.elapsed() < GIVE_UP {
        let mut headers = vec![("accept", "text/plain")];
        if let Some(lm) = &last_modified {
            headers.push(("if-modified-since", lm.as_str()));
        }
        if let Ok(r) = crl.send(Method::GET, CRL_PATH, &headers, "").await {
            // The CRL was served when it arrived: ca-bench's own parsing (tens of milliseconds for
            // 100,000 entries) is not B's delay.
            let arrived = acked.elapsed();
            if r.status == StatusCode::OK {
                if lists(&r.body, serial) {
                    return Some(arrived);
                }
                last_modified = r.last_modified.or(last_modified);
            }
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    None
}

/// Agents issued on A for the purpose, revoked on A one after the other; for each, the delay from A's
/// acknowledgement until B refuses a new handshake with it and until B's CRL lists it.
async fn propagation(a: &OwnServer, b: &OwnServer, plan: &Plan) -> Result<Vec<Figures>, String> {
    let on_a = admin_target(a)?;
    let agents = make_agents(&format!("g{}", plan.run_id), plan.samples)?;
    let csrs: Vec<(String, String)> = agents
        .iter()
        .map(|g| (g.name.clone(), g.csr_pem.clone()))
        .collect();
    each(&on_a, false, 2, submit_reqs(&csrs), &[StatusCode::OK]).await;
    let names: Vec<String> = agents.iter().map(|g| g.name.clone()).collect();
    let body = serde_json::json!({ "certnames": names }).to_string();
    each(
        &on_a,
        true,
        1,
        vec![Req::json(Method::POST, "/puppet-ca/v1/sign", body)],
        &[StatusCode::OK],
    )
    .await;

    let mut admin_a = Session::new(on_a.clone(), true);
    let mut crl_b = Session::new(admin_target(b)?, false);
    let before = crl_b
        .send(Method::GET, CRL_PATH, &[("accept", "text/plain")], "")
        .await?;
    let entries = crl_serials(&before.body)?.len();
    let (mut refused, mut listed, mut errors) = (Vec::new(), Vec::new(), 0usize);
    let started = Instant::now();
    for g in &agents {
        let path = format!("/puppet-ca/v1/certificate/{}", g.name);
        let cert = match admin_a
            .send(Method::GET, &path, &[("accept", "text/plain")], "")
            .await
        {
            Ok(r) if r.status == StatusCode::OK => r.body,
            _ => {
                errors += 1;
                continue;
            }
        };
        let (Ok(serial), Ok(agent)) = (
            serial_of(&cert),
            Target::new("localhost", b.port, &a.ca_pem, (&cert, g.key_pem.as_bytes())),
        ) else {
            errors += 1;
            continue;
        };
        // B accepts the certificate, and its CRL does not list it yet.
        let current = crl_b
            .send(Method::GET, CRL_PATH, &[("accept", "text/plain")], "")
            .await;
        let last_modified = match current {
            Ok(r) if r.status == StatusCode::OK && !lists(&r.body, &serial) => r.last_modified,
            _ => {
                errors += 1;
                continue;
            }
        };
        if handshake_accepted(&agent).await != Some(true) {
            errors += 1;
            continue;
        }
        let r = admin_a
            .send(
                Method::PUT,
                &format!("/puppet-ca/v1/certificate_status/{}", g.name),
                &[("content-type", "application/json")],
                r#"{"desired_state":"revoked"}"#,
            )
            .await;
        if !r.is_ok_and(|r| r.status == StatusCode::NO_CONTENT) {
            errors += 1;
            continue;
        }
        let acked = Instant::now();
        let (h, l) = tokio::join!(
            until_refused(&agent, acked),
            until_listed(&mut crl_b, last_modified, &serial, acked)
        );
        match (h, l) {
            (Some(h), Some(l)) => {
                refused.push(h);
                listed.push(l);
            }
            _ => errors += 1,
        }
    }
    let wall = started.elapsed();
    let row = |phase: &str, lat: Vec<Duration>| {
        let max = lat.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let mut f = figures(phase, lat, wall);
        f.note = format!("max {max:.1} ms; CRL {entries}+ entries");
        if errors > 0 {
            f.note.push_str(&format!("; {errors} errors"));
        }
        f
    };
    Ok(vec![
        row("propagation A->B: new handshake refused", refused),
        row("propagation A->B: B's CRL lists the serial", listed),
    ])
}
