use ca_server::ca::crl::Reason;
use ca_server::datadir::DataDir;

use super::CmdResult;
use crate::{local, Out};

pub async fn run(dir: &DataDir, names: &[String], reason: &str, out: &mut Out<'_>) -> CmdResult {
    let reason: Reason = reason
        .parse()
        .map_err(|e: ca_server::ca::CaError| e.to_string())?;
    let authority = local::open(dir).await?;
    let actor = local::actor();
    let mut failed = false;
    for name in names {
        match authority.revoke(&actor, name, reason).await {
            Ok(serials) if serials.is_empty() => out.line(&format!("{name} is already revoked")),
            Ok(serials) => {
                let list: Vec<String> = serials.iter().map(u64::to_string).collect();
                out.line(&format!(
                    "Revoked certificate for {name} (serial {}, reason {reason})",
                    list.join(", ")
                ));
            }
            Err(e) => {
                failed = true;
                out.error(&e.to_string());
            }
        }
    }
    authority.store().close().await;
    Ok(i32::from(failed))
}
