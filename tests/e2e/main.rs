//! End-to-end tests: one test binary (every extra one is another slow link).
//!
//! `cli_*` drive the `ca` CLI in process (captured output, exit codes) and, where it matters, as the
//! real binary; everything issued is checked with `openssl` and re-parsed with x509-parser.

// The tests drive real processes and wait for them by polling, on the real clock.
#![allow(clippy::disallowed_methods)]

/// the audit log's hash chain, seals and head file detect edits, cuts and rewrites
mod audit_seal;
/// puppetserver HOCON and Puppet 3 auth.conf files decide access
mod auth_config;
/// every endpoint by every kind of caller, against puppetserver's default rules
mod auth_matrix;
/// malformed, oversized and hostile requests get a clear 4xx and change nothing
mod bad_input;
/// `ca-bench` end to end on a tiny run, and the JSON it writes
mod bench_smoke;
/// the `ca` CLI over a corpus of CSRs: verdicts, messages, exit codes
mod cli_corpus;
/// `ca` setup, sign, revoke, clean, generate as an admin uses them
mod cli_lifecycle;
/// a day of CA administration with `ca`, checked with openssl
mod cli_scenario;
/// answers a side-by-side probe against puppetserver found different
mod compat;
/// agents, admins and the CLI at once: no lost or duplicated work
mod concurrency;
/// SIGKILL at any moment loses nothing acknowledged
pub mod crash;
/// CRL numbers, dates and Last-Modified under revocations and clock steps
mod crl_freshness;
/// PostgreSQL primary failover to a synchronous standby under load
mod failover;
/// random input to parsers and endpoints: no panic
mod fuzz_smoke;
/// shared helpers: a CA in a temp dir, the binaries, openssl checks
mod harness;
/// the Puppet CA API request by request
mod http_api;
/// puppetserver's infrastructure CRL: import, serve, change, export
mod infra_crl;
/// root + intermediate CA setups, chain-mode agents, root CRL upkeep
mod intermediate;
/// encrypted CA keys: setup, import, signing, wrong passphrases
mod key_passphrase;
/// CA lifecycle: the relying parties' CRL, expirations, CA extension, renewal
mod lifecycle;
/// connection, header, body and time limits hold against greedy clients
mod limits;
/// `ca migrate-store` between SQLite and PostgreSQL keeps everything
mod migrate_store;
/// import of real puppetserver and Puppet 3 CA dirs, export, round trips
pub mod migration;
/// non-CA masters (nginx, Apache) proxying certificate traffic
mod multi_master;
/// backup, metrics, expirations, audit from an operator's seat
mod operations;
/// Foreman, Choria and go-puppetca requests replayed header for header
mod other_clients;
/// the Debian package: build, install, serve a real agent, purge
mod package;
/// throwaway PostgreSQL clusters (and standbys) for the tests
mod pg;
/// the CA key in a SoftHSM token (PKCS#11): setup, signing, CRLs, errors
mod pkcs11;
/// the signing policy: alt names, extensions, autosign, renewal, at a fixed clock
mod policy;
/// Puppet 8.10 agents and the 2.7 CA CLI from a Debian 13 root
mod puppet8;
/// every `ca` line of the README's command blocks, extracted and run with the real binary
mod readme_commands;
/// Puppet 7.23 agents and the 2.4 CA CLI against the server
mod real_clients;
/// SIGHUP reload and systemd notifications on the real binary
pub(crate) mod reload;
/// `ca --server` gives the same results as local mode
mod remote_cli;
/// several replicas on one PostgreSQL database, behind a balancer
mod replicas;
/// a revoked certificate stops working at once: handshake, resumption, keep-alive
mod revocation;
/// the lower-severity findings of the security review, each as an attack
mod security_low;
/// an in-process test server and its clients
mod server;
/// the real `ca-server` binary: start, logs, help, README command, limits
mod server_binary;
/// one contract battery for both storage backends
mod store_contract;
