use ca_server::datadir::DataDir;

use super::CmdResult;
use crate::{local, Out};

pub async fn run(dir: &DataDir, names: &[String], out: &mut Out<'_>) -> CmdResult {
    let authority = local::open(dir).await?;
    let actor = local::actor();
    let mut failed = false;
    for name in names {
        match authority.clean(&actor, name).await {
            Ok(c) => {
                let mut what = Vec::new();
                if !c.revoked.is_empty() {
                    let list: Vec<String> = c.revoked.iter().map(u64::to_string).collect();
                    what.push(format!("revoked serial {}", list.join(", ")));
                }
                if c.removed_certificates > 0 {
                    what.push("removed the certificate".to_string());
                }
                if c.removed_request {
                    what.push("removed the pending request".to_string());
                }
                out.line(&format!("Cleaned {name}: {}", what.join(", ")));
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
