//! autosign.conf allow-lists: parse, then match fixed names and the file's own lines.
#![no_main]

use ca_server::policy::autosign::AllowList;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "agent1.example.com",
    "a.b.example.com",
    "example.com",
    "badexample.com",
    "",
    ".",
    "*",
    "AGENT1.EXAMPLE.COM",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let list = AllowList::parse(text);
    let lines = text.lines().count();
    for (n, line) in &list.invalid {
        assert!(*n >= 1 && *n <= lines, "line {n} of {lines}");
        assert!(line.contains('#') || line.contains(' ') || line.contains('\t'));
    }
    for name in NAMES.iter().copied().chain(text.lines().take(256)) {
        if let Some(entry) = list.matching(name) {
            assert!(text.contains(entry), "{entry:?} is not in the file");
        }
    }
    // Every valid exact entry matches itself.
    for raw in text.lines().take(256) {
        let line = raw.trim_end_matches('\r').trim();
        let valid = !line.is_empty()
            && !line.starts_with('#')
            && !line.contains('#')
            && !line.contains(' ')
            && !line.contains('\t');
        if valid && !line.starts_with('*') {
            assert!(list.matching(line).is_some(), "{line:?} does not match itself");
        }
    }
});
