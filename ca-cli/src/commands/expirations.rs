//! `ca expirations [--within D] [--format json]`: what expires when, soonest first.

use anyhow::Context as _;
use ca_server::authority::{Expiring, ExpiringKind};

use super::{parse_ttl, CmdResult};
use crate::backend::Backend;
use crate::cli::Format;
use crate::Out;

pub async fn run(b: &Backend, within: Option<&str>, format: Format, out: &mut Out<'_>) -> CmdResult {
    let within = parse_ttl(within).context("--within")?;
    let items = b.expirations(within, true).await?;
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&items)?;
            out.line(&text);
        }
        Format::Text => out.raw(&text(&items, within.is_some())),
    }
    Ok(0)
}

fn kind_name(k: ExpiringKind) -> &'static str {
    match k {
        ExpiringKind::Ca => "ca",
        ExpiringKind::Server => "server",
        ExpiringKind::Admin => "admin",
        ExpiringKind::Crl => "crl",
        ExpiringKind::RelyingCrl => "relying-crl",
        ExpiringKind::Certificate => "certificate",
    }
}

/// A table: expiry, days left, kind, name, serial (CRL number for CRLs).
fn text(items: &[Expiring], windowed: bool) -> String {
    if items.is_empty() {
        return if windowed {
            "Nothing expires within that window\n".to_string()
        } else {
            "Nothing to list\n".to_string()
        };
    }
    let width = items.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
    let mut t = format!(
        "{:<20}  {:>9}  {:<11}  {:<width$}  SERIAL\n",
        "EXPIRES", "DAYS LEFT", "KIND", "NAME"
    );
    for i in items {
        let serial = i.serial.map(|s| s.to_string()).unwrap_or_default();
        let days = if i.days_left < 0 {
            "expired".to_string()
        } else {
            i.days_left.to_string()
        };
        t.push_str(&format!(
            "{:<20}  {:>9}  {:<11}  {:<width$}  {serial}\n",
            i.expires,
            days,
            kind_name(i.kind),
            i.name
        ));
    }
    t
}
