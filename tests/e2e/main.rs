//! End-to-end tests: one test binary (every extra one is another slow link).
//!
//! `cli_*` drive the `ca` CLI in process (captured output, exit codes) and, where it matters, as the
//! real binary; everything issued is checked with `openssl` and re-parsed with x509-parser.

mod audit_seal;
mod auth_config;
mod auth_matrix;
mod bad_input;
mod cli_corpus;
mod cli_lifecycle;
mod cli_scenario;
mod compat;
mod concurrency;
pub mod crash;
mod crl_freshness;
mod failover;
mod fuzz_smoke;
mod harness;
mod http_api;
mod infra_crl;
mod intermediate;
mod key_passphrase;
mod limits;
mod migrate_store;
pub mod migration;
mod multi_master;
mod operations;
mod other_clients;
mod pg;
mod policy;
mod puppet8;
mod real_clients;
mod remote_cli;
mod replicas;
mod revocation;
mod security_low;
mod server;
mod server_binary;
mod store_contract;
