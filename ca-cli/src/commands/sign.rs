use ca_server::authority::{ListFilter, SignRequest};
use ca_server::policy::SigningOptions;

use super::{parse_ttl, CmdResult};
use crate::backend::Backend;
use crate::cli::SignArgs;
use crate::Out;

pub async fn run(b: &Backend, args: SignArgs, out: &mut Out<'_>) -> CmdResult {
    let req = SignRequest {
        options: SigningOptions {
            allow_dns_alt_names: args.allow_dns_alt_names,
            allow_authorization_extensions: args.allow_authorization_extensions,
        },
        ttl: parse_ttl(args.ttl.as_deref())?,
    };
    let names = if args.all {
        b.list(ListFilter::REQUESTED)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        args.names
    };
    if names.is_empty() {
        out.line("No certificate requests to sign");
        return Ok(0);
    }
    let mut failed = false;
    for (name, res) in b.sign(&names, req).await? {
        match res {
            Ok(Some(serial)) => out.line(&format!("Signed certificate for {name} (serial {serial})")),
            Ok(None) => out.line(&format!("Signed certificate for {name}")),
            Err(e) => {
                failed = true;
                out.error(&e);
            }
        }
    }
    Ok(i32::from(failed))
}
