use ca_server::authority::{ListFilter, SignRequest};
use ca_server::datadir::DataDir;
use ca_server::policy::SigningOptions;

use super::{parse_ttl, CmdResult};
use crate::cli::SignArgs;
use crate::{local, Out};

pub async fn run(dir: &DataDir, args: SignArgs, out: &mut Out<'_>) -> CmdResult {
    let req = SignRequest {
        options: SigningOptions {
            allow_dns_alt_names: args.allow_dns_alt_names,
            allow_authorization_extensions: args.allow_authorization_extensions,
        },
        ttl: parse_ttl(args.ttl.as_deref())?,
    };
    let authority = local::open(dir).await?;
    let names = if args.all {
        let pending = authority
            .list(ListFilter::REQUESTED)
            .await
            .map_err(|e| e.to_string())?;
        pending.into_iter().map(|s| s.name).collect()
    } else {
        args.names
    };
    if names.is_empty() {
        out.line("No certificate requests to sign");
    }
    let actor = local::actor();
    let mut failed = false;
    for name in &names {
        match authority.sign(&actor, name, req).await {
            Ok(issued) => out.line(&format!(
                "Signed certificate for {name} (serial {})",
                issued.serial
            )),
            Err(e) => {
                failed = true;
                out.error(&e.to_string());
            }
        }
    }
    authority.store().close().await;
    Ok(i32::from(failed))
}
