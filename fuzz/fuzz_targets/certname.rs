//! Certname rules: what `validate_certname` accepts is safe as a storage key, a path segment and a
//! log word; `validate_subject` agrees with it; messages carry no control characters.
#![no_main]

use ca_server::ca::names::{self, MAX_CERTNAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = s.split_once('\n').unwrap_or((s, s));
    let verdict = names::validate_certname(a);
    if verdict.is_ok() {
        assert!(names::is_valid_syntax(a));
        assert!(!a.is_empty() && a.len() <= MAX_CERTNAME_LEN);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c)));
        assert!(!a.contains("..") && !a.starts_with('.') && !a.ends_with('.'));
        assert!(a != "." && a != ".." && !a.contains('/'));
    }
    assert_eq!(names::validate_subject(a, a), verdict);
    match names::validate_subject(a, b) {
        Ok(()) => assert!(a == b && verdict.is_ok()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
        }
    }
    if let Err(e) = &verdict {
        assert!(!e.to_string().chars().any(char::is_control));
    }
    let shown = names::printable(a);
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.chars().count() <= 300 * 10 + 1);
});
