use super::CmdResult;
use crate::backend::Backend;
use crate::Out;

pub async fn run(b: &Backend, names: &[String], out: &mut Out<'_>) -> CmdResult {
    let mut failed = false;
    for name in names {
        match b.clean(name).await {
            Ok(summary) => out.line(&format!("Cleaned {name}: {summary}")),
            Err(e) => {
                failed = true;
                out.error(&format!("{e:#}"));
            }
        }
    }
    Ok(i32::from(failed))
}
