use ca_server::policy::SigningOptions;

use super::CmdResult;
use crate::backend::Backend;
use crate::cli::Format;
use crate::Out;

/// `ca check`: the verdict, item by item. Exit 0 whatever the verdict (the explanation is the result).
pub async fn run(
    b: &Backend,
    name: &str,
    flags: SigningOptions,
    format: Format,
    out: &mut Out<'_>,
) -> CmdResult {
    let e = b.explain(name, flags).await?;
    if format == Format::Json {
        out.line(&serde_json::to_string_pretty(&e)?);
        return Ok(0);
    }
    out.line(&format!("{}: pending request", e.certname));
    let width = e.items.iter().map(|i| i.item.len()).max().unwrap_or(0).max(10);
    for i in &e.items {
        let verdict = if i.allowed { "allowed" } else { "refused" };
        out.line(&format!(
            "  {:<9} {:<width$}  {verdict}  {}",
            i.kind, i.item, i.reason
        ));
    }
    match &e.refusal {
        None => out.line("sign:     ca sign would sign it"),
        Some(r) => out.line(&format!("sign:     ca sign would refuse it: {r}")),
    }
    let auto = if e.autosign {
        "would sign it"
    } else {
        "would not sign it"
    };
    out.line(&format!("autosign: {auto} ({})", e.autosign_reason));
    Ok(0)
}

/// `ca prune`.
pub async fn prune(b: &Backend, dry_run: bool, out: &mut Out<'_>) -> CmdResult {
    let serials = b.prune(dry_run).await?;
    let list: Vec<String> = serials.iter().map(u64::to_string).collect();
    match (serials.is_empty(), dry_run) {
        (true, _) => out.line("No expired certificates in the CRL"),
        (false, true) => out.line(&format!(
            "Would remove {} CRL entries: serial {}",
            serials.len(),
            list.join(", ")
        )),
        (false, false) => out.line(&format!(
            "Removed {} CRL entries: serial {}",
            serials.len(),
            list.join(", ")
        )),
    }
    Ok(0)
}
