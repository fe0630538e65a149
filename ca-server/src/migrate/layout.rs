//! The files of a puppetserver cadir (§6) and their formats.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::ca::text::puppet_time;

/// The CA files that must all be present (or all absent).
pub(super) const REQUIRED: [&str; 3] = ["ca_crt.pem", "ca_key.pem", "ca_crl.pem"];

/// Paths in a cadir.
pub(super) struct Cadir<'a>(pub &'a Path);

impl Cadir<'_> {
    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub(super) fn signed(&self) -> PathBuf {
        self.0.join("signed")
    }
    pub(super) fn requests(&self) -> PathBuf {
        self.0.join("requests")
    }
    /// Puppet 3 kept the CA key's password here.
    pub(super) fn password(&self) -> PathBuf {
        self.0.join("private/ca.pass")
    }
}

/// One inventory line: `0x%04X <notBefore> <notAfter> /CN=<name>` (puppetserver's form).
pub(super) fn inventory_line(
    serial: u64,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    subject: &str,
) -> String {
    format!(
        "0x{serial:04X} {} {} /{subject}",
        puppet_time(not_before),
        puppet_time(not_after)
    )
}

/// The serial of an inventory line (upper or lower case hex after `0x`).
pub(super) fn inventory_serial(line: &str) -> Option<u64> {
    let hex = line.split_whitespace().next()?.strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok()
}

/// The serial file: next serial, hex (`002A` or `2a`).
pub(super) fn parse_serial_file(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim(), 16).ok()
}

/// The `.pem` files of a directory, by name, as (stem, path).
pub(super) fn pem_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("pem") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                out.push((stem.to_string(), path.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(
            inventory_line(42, t, t, "CN=a"),
            "0x002A 2023-11-14T22:13:20UTC 2023-11-14T22:13:20UTC /CN=a"
        );
        assert_eq!(inventory_serial("0x002a 2023 x /CN=a"), Some(42));
        assert_eq!(inventory_serial("garbage"), None);
        assert_eq!(parse_serial_file("002A\n"), Some(42));
        assert_eq!(parse_serial_file("2a"), Some(42));
    }
}
