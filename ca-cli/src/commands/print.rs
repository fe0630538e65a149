use ca_server::ca::digest::{fingerprint as fp, Digest};
use ca_server::ca::signer::parse_cert_bundle;
use ca_server::ca::text::{describe_certificate, describe_crl};
use ca_server::ca::{names, pem_encode};

use super::CmdResult;
use crate::backend::Backend;
use crate::Out;

fn check_name(name: &str) -> anyhow::Result<()> {
    if name == "ca" {
        return Ok(());
    }
    names::validate_certname(name).map_err(anyhow::Error::from)
}

pub async fn print(b: &Backend, name: &str, out: &mut Out<'_>) -> CmdResult {
    check_name(name)?;
    let ders = if name == "ca" {
        parse_cert_bundle(&b.ca_chain().await?)?
    } else {
        vec![b
            .certificate(name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no certificate for {name}"))?]
    };
    for der in ders {
        out.raw(&describe_certificate(&der)?);
        out.raw(&pem_encode("CERTIFICATE", &der));
    }
    Ok(0)
}

pub async fn crl(b: &Backend, text: bool, out: &mut Out<'_>) -> CmdResult {
    for der in b.crl().await? {
        if text {
            out.raw(&describe_crl(&der)?);
        } else {
            out.raw(&pem_encode("X509 CRL", &der));
        }
    }
    Ok(0)
}

pub async fn fingerprint(b: &Backend, name: &str, digest: &str, out: &mut Out<'_>) -> CmdResult {
    let digest = Digest::parse(digest)
        .ok_or_else(|| anyhow::anyhow!("unknown digest '{digest}': use sha256, sha1 or sha512"))?;
    check_name(name)?;
    let der = if name == "ca" {
        parse_cert_bundle(&b.ca_chain().await?)?.into_iter().next()
    } else {
        match b.certificate(name).await? {
            Some(d) => Some(d),
            None => b.request(name).await?,
        }
    };
    let der = der.ok_or_else(|| anyhow::anyhow!("no certificate or request for {name}"))?;
    out.line(&format!("{name} ({}) {}", digest.label(), fp(digest, &der)));
    Ok(0)
}
