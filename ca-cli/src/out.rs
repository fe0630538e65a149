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
pub fn list_text(statuses: &[CertStatus]) -> String {
    if statuses.is_empty() {
        return "No certificates to list\n".to_string();
    }
    let width = statuses.iter().map(|s| s.name.len()).max().unwrap_or(0) + 6;
    let mut text = String::new();
    for (state, title) in [
        ("requested", "Requested Certificates:"),
        ("signed", "Signed Certificates:"),
        ("revoked", "Revoked Certificates:"),
    ] {
        let group: Vec<&CertStatus> = statuses.iter().filter(|s| s.state == state).collect();
        if group.is_empty() {
            continue;
        }
        text.push_str(title);
        text.push('\n');
        for s in group {
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
            text.push('\n');
        }
    }
    text
}
