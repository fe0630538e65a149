//! Decisions, pure: which requests may be signed and with what. The engine's issuing function takes a
//! [`Permit`], and only this module makes one.

pub mod access;
pub mod autosign;
pub mod signing;

pub use signing::{AltNameRule, Permit, PolicyError, SigningOptions, SigningPolicy};
