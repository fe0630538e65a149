//! Output: stdout for results, stderr for errors; both injectable for tests.

use std::io::Write;

use ca_server::authority::CertStatus;

/// Where a command writes.
pub struct Out<'a> {
    stdout: &'a mut dyn Write,
    stderr: &'a mut dyn Write,
}

impl<'a> Out<'a> {
    /// Wraps the two streams.
    pub fn new(stdout: &'a mut dyn Write, stderr: &'a mut dyn Write) -> Self {
        Out { stdout, stderr }
    }
    /// A line of results.
    pub fn line(&mut self, s: &str) {
        let _ = writeln!(self.stdout, "{s}");
    }
    /// Raw text to stdout.
    pub fn raw(&mut self, s: &str) {
        let _ = self.stdout.write_all(s.as_bytes());
    }
    /// An error line.
    pub fn error(&mut self, s: &str) {
        let _ = writeln!(self.stderr, "Error: {s}");
    }
    /// A warning line.
    pub fn warn(&mut self, s: &str) {
        let _ = writeln!(self.stderr, "Warning: {s}");
    }
}

fn inspect_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `puppetserver ca list` text layout: non-empty sections, names padded to the longest + 6.
/// `puppetserver ca list`'s layout; certificates whose notAfter is within `window` seconds of `now`
/// are marked (`expires in N days`, `EXPIRED`).
pub fn list_text(statuses: &[CertStatus], now: i64, window: i64) -> String {
    if statuses.is_empty() {
        return NOTHING_LISTED.to_string();
    }
    let width = statuses.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (state, title) in LIST_GROUPS {
        let group: Vec<&CertStatus> = statuses.iter().filter(|s| s.state == state).collect();
        if group.is_empty() {
            continue;
        }
        text.push_str(title);
        text.push('\n');
        for s in group {
            push_status_line(&mut text, s, width, now, window);
        }
    }
    text
}

/// What `ca list` prints when it lists nothing.
pub const NOTHING_LISTED: &str = "No certificates to list\n";

/// The groups of `ca list`'s text, in order: the state and its title line.
pub const LIST_GROUPS: [(&str, &str); 3] = [
    ("requested", "Requested Certificates:"),
    ("signed", "Signed Certificates:"),
    ("revoked", "Revoked Certificates:"),
];

/// One status's line of `ca list`'s text; `longest` is the longest name listed (the column).
pub fn push_status_line(text: &mut String, s: &CertStatus, longest: usize, now: i64, window: i64) {
    let width = longest + 6;
    text.push_str(&format!("    {:<width$} (SHA256)  {}", s.name, s.fingerprint));
    if !s.subject_alt_names.is_empty() {
        text.push_str(&format!("\talt names: {}", inspect_list(&s.subject_alt_names)));
    }
    if !s.authorization_extensions.is_empty() {
        let exts: Vec<String> = s
            .authorization_extensions
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        text.push_str(&format!("\tauthorization extensions: [{}]", exts.join(", ")));
    }
    if s.state == "signed" && s.name != ca_server::authority::OCSP_CERTNAME {
        let left = s
            .not_after
            .as_deref()
            .and_then(unix_of_puppet_time)
            .map(|t| (t - now, t));
        match left {
            Some((l, _)) if l <= 0 => text.push_str("\tEXPIRED"),
            Some((l, at)) if l <= window => text.push_str(&format!(
                "\texpires in {} days",
                ca_server::authority::days_left(at, now)
            )),
            _ => {}
        }
    }
    text.push('\n');
}

/// `2031-11-28T03:15:45UTC` (the status object's time) as Unix seconds.
fn unix_of_puppet_time(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]UTC");
    time::PrimitiveDateTime::parse(s, format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}
