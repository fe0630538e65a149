//! CSR bodies: `csr::parse` (PEM, as submitted) and `csr::parse_der`, then the signing policy on
//! whatever parses. What parses must re-encode to PEM that parses to the same request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ca_fuzz::targets::csr(data));
