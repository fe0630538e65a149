//! The CA engine: pure functions over X.509 data. No HTTP, no SQL.
//!
//! Parsing and checking CSRs (`csr`, `names`), issuing certificates (`issue`), building CRLs (`crl`),
//! keys (`keys`), OCSP answers (`ocsp`) and the small DER helpers Puppet's extension values need
//! (`der`).

pub mod crl;
pub mod csr;
pub mod der;
pub mod digest;
pub mod duration;
pub mod error;
pub mod issue;
pub mod keys;
pub mod names;
pub mod ocsp;
pub mod oids;
pub mod passphrase;
pub mod signer;
pub mod text;
pub mod token;

pub use error::CaError;
pub use signer::CaSigner;

/// PEM with LF line endings, as Puppet writes it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests;
