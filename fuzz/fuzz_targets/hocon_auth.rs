//! puppetserver HOCON auth.conf: parse, then decide requests (the file's own paths, or written ones).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ca_fuzz::targets::hocon_auth(data));
