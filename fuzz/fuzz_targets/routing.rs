//! Path handling before routing: `normalize` (percent-decoding, traversal and control refusal),
//! `translate` (Puppet 3 routes) and `encode_path`. A normalised path re-encodes to a valid URI path
//! that normalises back to itself, and a translation is a normalised v1 path that is not translated
//! again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ca_fuzz::targets::routing(data));
