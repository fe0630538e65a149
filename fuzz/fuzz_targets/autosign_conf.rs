//! autosign.conf allow-lists: parse, then match fixed names and the file's own lines.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ca_fuzz::targets::autosign_conf(data));
