//! Certname rules: what `validate_certname` accepts is safe as a storage key, a path segment and a
//! log word; `validate_subject` agrees with it; messages carry no control characters.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ca_fuzz::targets::certname(data));
