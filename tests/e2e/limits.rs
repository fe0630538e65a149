//! Slow and idle clients cannot take the server from everybody else: a per-address connection cap,
//! accept-and-close when full, a handshake timeout, 413 before reading an oversized body, a body-read
//! timeout.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::revocation::KeepAlive;
use crate::server::{As, TestServer};

/// A few hundred idle sockets from one address (the kind a slowloris or a broken load balancer opens)
/// do not delay an agent on another address: it is served within a second with max-connections = 64.
#[test]
fn idle_sockets_from_one_address_do_not_starve_another() {
    let s = TestServer::start_with("[limits]\nmax-connections = 64\n");
    let idle: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(s.addr).unwrap()).collect();
    // Let the server take them all in.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut agent = KeepAlive::open_from(&s, &As::Anonymous, Some("127.0.0.2".parse().unwrap()));
    let (status, body) = agent.get("/puppet-ca/v1/certificate/ca").unwrap();
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        took < Duration::from_secs(1),
        "the agent waited {took:?} behind idle sockets"
    );
    println!("agent served in {} ms behind 300 idle sockets", took.as_millis());
    // Most of the idle sockets were closed at once by the per-address cap (a quarter of 64).
    let closed = idle
        .iter()
        .filter(|t| {
            t.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut t = *t;
            match t.read(&mut [0u8; 1]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        })
        .count();
    assert!(
        closed >= 300 - 16,
        "only {closed} of 300 idle sockets were closed"
    );
}

/// A raw TLS exchange: sends `request`, returns what came back within `wait` (the connection may stay
/// open) and how long the answer took.
fn raw(s: &TestServer, request: &[u8], wait: Duration) -> (String, Duration) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(s.ca.ca_cert()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = s.addr;
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(request).await.unwrap();
        tls.flush().await.unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(wait.saturating_sub(started.elapsed()), tls.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
    })
}

/// An announced body over the limit gets 413 at once, before any of it is read.
#[test]
fn oversized_content_length_is_refused_before_the_body() {
    let s = TestServer::start();
    let req = b"PUT /puppet-ca/v1/certificate_request/big.example.test HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: text/plain\r\nContent-Length: 100000000\r\n\r\n";
    let (answer, took) = raw(&s, req, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?} after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A body that stops coming gets 408 after body-read-timeout; the handshake has its own timeout.
#[test]
fn slow_bodies_and_silent_handshakes_time_out() {
    let s = TestServer::start_with(
        "[limits]\nbody-read-timeout = \"1s\"\nhandshake-timeout = \"1s\"\nheader-read-timeout = \"30s\"\n",
    );
    let req = b"PUT /puppet-ca/v1/certificate_request/slow.example.test HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n-----BEGIN";
    let (answer, took) = raw(&s, req, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?} after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A TCP connection that never starts its handshake is closed after handshake-timeout, not after
    // the (longer) header-read-timeout.
    let mut silent = TcpStream::connect(s.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    let n = silent.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n, 0);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "silent connection held for {took:?}"
    );
}
