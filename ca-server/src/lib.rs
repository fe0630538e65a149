//! ca-server: a Puppet-compatible certificate authority.
//!
//! Layers: [`ca`] is the engine (pure X.509), [`policy`] the decisions, [`storage`] the SQLite state,
//! and [`authority`] the operations both the server and the `ca` CLI call.

#![forbid(unsafe_code)]
// Items only this crate uses say so (`pub(crate)`), so that rustc reports the ones nothing uses.
#![warn(unreachable_pub)]

pub mod authority;
pub mod ca;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod error;
pub mod generate;
pub mod http;
pub mod memory;
pub mod migrate;
pub mod notify;
pub mod policy;
pub mod priority;
pub mod server;
pub mod storage;
pub mod tls;
