use ca_server::ca::digest::{fingerprint as fp, Digest};
use ca_server::ca::signer::parse_cert_bundle;
use ca_server::ca::text::{describe_certificate, describe_crl};
use ca_server::ca::{names, pem_encode};

use super::CmdResult;
use crate::backend::Backend;
use crate::Out;

fn check_name(name: &str) -> Result<(), String> {
    if name == "ca" {
        return Ok(());
    }
    names::validate_certname(name).map_err(|e| e.to_string())
}

pub async fn print(b: &Backend, name: &str, out: &mut Out<'_>) -> CmdResult {
    check_name(name)?;
    let ders = if name == "ca" {
        parse_cert_bundle(&b.ca_chain().await?).map_err(|e| e.to_string())?
    } else {
        vec![b
            .certificate(name)
            .await?
            .ok_or_else(|| format!("no certificate for {name}"))?]
    };
    for der in ders {
        out.raw(&describe_certificate(&der).map_err(|e| e.to_string())?);
        out.raw(&pem_encode("CERTIFICATE", &der));
    }
    Ok(0)
}

pub async fn crl(b: &Backend, text: bool, out: &mut Out<'_>) -> CmdResult {
    for der in b.crl().await? {
        if text {
            out.raw(&describe_crl(&der).map_err(|e| e.to_string())?);
        } else {
            out.raw(&pem_encode("X509 CRL", &der));
        }
    }
    Ok(0)
}

pub async fn fingerprint(b: &Backend, name: &str, digest: &str, out: &mut Out<'_>) -> CmdResult {
    let digest = Digest::parse(digest)
        .ok_or_else(|| format!("unknown digest '{digest}': use sha256, sha1 or sha512"))?;
    check_name(name)?;
    let der = if name == "ca" {
        parse_cert_bundle(&b.ca_chain().await?)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
    } else {
        match b.certificate(name).await? {
            Some(d) => Some(d),
            None => b.request(name).await?,
        }
    };
    let der = der.ok_or_else(|| format!("no certificate or request for {name}"))?;
    out.line(&format!("{name} ({}) {}", digest.label(), fp(digest, &der)));
    Ok(0)
}
