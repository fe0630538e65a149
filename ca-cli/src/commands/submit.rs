use anyhow::Context as _;
use std::io::Read;
use std::path::Path;

use ca_server::ca::csr::{self, MAX_CSR_BYTES};
use ca_server::ca::digest::{fingerprint, Digest};

use super::CmdResult;
use crate::backend::Backend;
use crate::Out;

pub async fn run(b: &Backend, file: &Path, certname: Option<String>, out: &mut Out<'_>) -> CmdResult {
    let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut body = Vec::new();
    // One byte past the limit is enough to know it is too large.
    f.take(MAX_CSR_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let parsed = csr::parse(&body).ok();
    let name = certname
        .or_else(|| parsed.as_ref().map(|c| c.common_name.clone()))
        .unwrap_or_default();
    b.submit(&name, &body).await?;
    let fp = parsed
        .map(|c| fingerprint(Digest::Sha256, &c.der))
        .unwrap_or_default();
    out.line(&format!("Submitted certificate request for {name} (SHA256) {fp}"));
    Ok(0)
}
