use ca_server::ca::digest::{fingerprint as fp, Digest};
use ca_server::ca::signer::parse_cert_bundle;
use ca_server::ca::text::{describe_certificate, describe_crl};
use ca_server::ca::{names, pem_encode};
use ca_server::datadir::DataDir;

use super::CmdResult;
use crate::{local, Out};

fn check_name(name: &str) -> Result<(), String> {
    if name == "ca" {
        return Ok(());
    }
    names::validate_certname(name).map_err(|e| e.to_string())
}

pub async fn print(dir: &DataDir, name: &str, out: &mut Out<'_>) -> CmdResult {
    check_name(name)?;
    let authority = local::open(dir).await?;
    let ders = if name == "ca" {
        parse_cert_bundle(&authority.signer().chain_pem).map_err(|e| e.to_string())?
    } else {
        let cert = authority
            .store()
            .current_certificate(name)
            .await
            .map_err(|e| e.to_string())?;
        authority.store().close().await;
        vec![cert.ok_or_else(|| format!("no certificate for {name}"))?.der]
    };
    for der in ders {
        out.raw(&describe_certificate(&der).map_err(|e| e.to_string())?);
        out.raw(&pem_encode("CERTIFICATE", &der));
    }
    Ok(0)
}

pub async fn crl(dir: &DataDir, text: bool, out: &mut Out<'_>) -> CmdResult {
    let authority = local::open(dir).await?;
    let row = authority.crl().await.map_err(|e| e.to_string())?;
    authority.store().close().await;
    if text {
        out.raw(&describe_crl(&row.der).map_err(|e| e.to_string())?);
    } else {
        out.raw(&pem_encode("X509 CRL", &row.der));
    }
    Ok(0)
}

pub async fn fingerprint(dir: &DataDir, name: &str, digest: &str, out: &mut Out<'_>) -> CmdResult {
    let digest = Digest::parse(digest)
        .ok_or_else(|| format!("unknown digest '{digest}': use sha256, sha1 or sha512"))?;
    check_name(name)?;
    let authority = local::open(dir).await?;
    let der = if name == "ca" {
        Some(authority.signer().cert.der.clone())
    } else {
        let store = authority.store();
        match store.current_certificate(name).await.map_err(|e| e.to_string())? {
            Some(c) => Some(c.der),
            None => store
                .request(name)
                .await
                .map_err(|e| e.to_string())?
                .map(|r| r.csr_der),
        }
    };
    authority.store().close().await;
    let der = der.ok_or_else(|| format!("no certificate or request for {name}"))?;
    out.line(&format!("{name} ({}) {}", digest.label(), fp(digest, &der)));
    Ok(0)
}
