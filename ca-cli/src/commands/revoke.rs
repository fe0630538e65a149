use ca_server::ca::crl::Reason;

use super::CmdResult;
use crate::backend::Backend;
use crate::Out;

pub async fn run(b: &Backend, names: &[String], reason: &str, out: &mut Out<'_>) -> CmdResult {
    let reason: Reason = reason
        .parse()
        .map_err(|e: ca_server::ca::CaError| e.to_string())?;
    let mut failed = false;
    for name in names {
        match b.revoke(name, reason).await {
            Ok(Some(serials)) if serials.is_empty() => out.line(&format!("{name} is already revoked")),
            Ok(Some(serials)) => {
                let list: Vec<String> = serials.iter().map(u64::to_string).collect();
                out.line(&format!(
                    "Revoked certificate for {name} (serial {}, reason {reason})",
                    list.join(", ")
                ));
            }
            Ok(None) => out.line(&format!("Revoked certificate for {name} (reason {reason})")),
            Err(e) => {
                failed = true;
                out.error(&e);
            }
        }
    }
    Ok(i32::from(failed))
}
