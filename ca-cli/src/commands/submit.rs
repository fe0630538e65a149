use std::io::Read;
use std::path::Path;

use ca_server::ca::csr::{self, MAX_CSR_BYTES};
use ca_server::ca::digest::{fingerprint, Digest};
use ca_server::datadir::DataDir;

use super::CmdResult;
use crate::{local, Out};

pub async fn run(dir: &DataDir, file: &Path, certname: Option<String>, out: &mut Out<'_>) -> CmdResult {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut body = Vec::new();
    // One byte past the limit is enough to know it is too large.
    f.take(MAX_CSR_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let authority = local::open(dir).await?;
    let name = certname
        .or_else(|| csr::parse(&body).ok().map(|c| c.common_name))
        .unwrap_or_default();
    let res = authority.submit(&local::actor(), &name, &body).await;
    authority.store().close().await;
    let csr = res.map_err(|e| e.to_string())?;
    out.line(&format!(
        "Submitted certificate request for {} (SHA256) {}",
        csr.common_name,
        fingerprint(Digest::Sha256, &csr.der)
    ));
    Ok(0)
}
