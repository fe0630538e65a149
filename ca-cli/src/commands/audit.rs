use anyhow::Context as _;
use std::path::Path;

use ca_server::ca::text::puppet_time;
use time::{Date, OffsetDateTime};

use super::CmdResult;
use crate::backend::Backend;
use crate::cli::Format;
use crate::Out;

fn local(b: &Backend) -> anyhow::Result<&ca_server::authority::Authority> {
    match b {
        Backend::Local(a) => Ok(a),
        Backend::Remote(_) => Err(anyhow::anyhow!(
            "the audit log and backups work on the data directory only (no --server)"
        )),
    }
}

/// A date (`2026-11-24`) or a duration ago (`24h`, `7d`).
fn since(text: &str, now: OffsetDateTime) -> anyhow::Result<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(text, &fmt) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    let ago = ca_server::ca::duration::parse(text).map_err(|_| {
        anyhow::anyhow!("--since: '{text}' is neither a date (2026-11-24) nor a duration (24h)")
    })?;
    Ok((now - ago).unix_timestamp())
}

pub async fn show(
    b: &Backend,
    certname: Option<&str>,
    since_text: Option<&str>,
    format: Format,
    out: &mut Out<'_>,
) -> CmdResult {
    let a = local(b)?;
    let from = since_text
        .map(|t| since(t, a.now()))
        .transpose()?
        .unwrap_or(i64::MIN);
    let rows = a.store().audit_rows(certname).await?;
    let rows: Vec<_> = rows.into_iter().filter(|r| r.at >= from).collect();
    if format == Format::Json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"id": r.id, "at": r.at, "actor": r.actor, "action": r.action,
                    "certname": r.certname, "serial": r.serial, "outcome": r.outcome, "detail": r.detail})
            })
            .collect();
        out.line(&serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    for r in rows {
        let at = OffsetDateTime::from_unix_timestamp(r.at)
            .map(puppet_time)
            .unwrap_or_default();
        let serial = r.serial.map(|s| format!(" serial {s}")).unwrap_or_default();
        let detail = r.detail.map(|d| format!(": {d}")).unwrap_or_default();
        out.line(&format!(
            "{at}  {}  {} {}{serial}  {}{detail}",
            r.actor,
            r.action,
            r.certname.unwrap_or_else(|| "-".into()),
            r.outcome
        ));
    }
    Ok(0)
}

pub async fn verify(b: &Backend, out: &mut Out<'_>) -> CmdResult {
    use ca_server::storage::AuditVerdict;
    let a = local(b)?;
    match a.store().verify_audit().await? {
        AuditVerdict::Intact {
            records,
            unsealed,
            head,
            head_file,
        } => {
            let older = if unsealed > 0 {
                format!(" ({unsealed} records from before sealing are covered by the first sealed one)")
            } else {
                String::new()
            };
            out.line(&format!(
                "audit log intact: {records} records, hash chain, seals and head verified{older}"
            ));
            if let Some((id, hash)) = head {
                out.line(&format!("head: record {id} {hash}"));
            }
            if !head_file {
                out.warn(&format!(
                    "{} is missing (as after a restore from a backup): a cut of the newest records \
                     cannot be ruled out; the next change writes it again",
                    ca_server::storage::HEAD_FILE
                ));
            }
            Ok(0)
        }
        AuditVerdict::Tampered { why, .. } => Err(anyhow::anyhow!("audit log tampered: {why}")),
    }
}

pub async fn backup(b: &Backend, file: &Path, out: &mut Out<'_>) -> CmdResult {
    let a = local(b)?;
    a.store()
        .backup(file)
        .await
        .with_context(|| format!("cannot write the backup {}", file.display()))?;
    out.line(&format!(
        "Wrote a consistent copy of the CA database to {}",
        file.display()
    ));
    out.line("Keep the data directory's keys (ca_key.pem, root_key.pem, server/, admin/) with it: they are files, not rows.");
    Ok(0)
}
