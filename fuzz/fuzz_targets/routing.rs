//! Path handling before routing: `normalize` (percent-decoding, traversal and control refusal),
//! `translate` (Puppet 3 routes) and `encode_path`. A normalised path re-encodes to a valid URI path
//! that normalises back to itself, and a translation is a normalised v1 path that is not translated
//! again.
#![no_main]

use ca_server::http::legacy;
use http::Method;
use libfuzzer_sys::fuzz_target;

fn check_normalised(path: &str) {
    assert!(path.starts_with('/'));
    assert!(!path.chars().any(char::is_control), "{path:?}");
    assert!(!path.split('/').any(|s| s == "." || s == ".."), "{path:?}");
    let enc = legacy::encode_path(path);
    assert!(enc.is_ascii());
    assert_eq!(legacy::normalize(&enc).as_deref(), Ok(path), "{enc:?}");
    let uri = http::Uri::builder()
        .path_and_query(enc.as_str())
        .build()
        .expect("an encoded path is a valid URI");
    assert_eq!(uri.path(), enc);
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [raw.to_string(), format!("/{raw}")] {
        let Ok(path) = legacy::normalize(&candidate) else {
            continue;
        };
        check_normalised(&path);
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ] {
            if let Some(t) = legacy::translate(&path, &m) {
                assert!(t.path.starts_with("/puppet-ca/v1/"), "{t:?}");
                assert!(!t.environment.is_empty() && !t.environment.contains('/'), "{t:?}");
                check_normalised(&t.path);
                assert!(legacy::translate(&t.path, &m).is_none(), "{t:?}");
            }
        }
    }
});
