//! Puppet 3 auth.conf: parse, then decide requests (the file's own paths, or written ones).
#![no_main]

use ca_server::policy::access::AccessRules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (conf, reqs) = ca_fuzz::requests(text);
    if let Ok(rules) = AccessRules::from_legacy(conf) {
        assert!(rules.is_legacy());
        assert!(!rules.allow_header_cert_info());
        ca_fuzz::exercise(&rules, &reqs);
    }
});
