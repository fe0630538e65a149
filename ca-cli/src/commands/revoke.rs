use ca_server::ca::crl::Reason;

use super::CmdResult;
use crate::backend::Backend;
use crate::Out;

pub async fn run(
    b: &Backend,
    names: &[String],
    serials: &[String],
    reason: &str,
    out: &mut Out<'_>,
) -> CmdResult {
    let reason: Reason = reason.parse()?;
    let serials = serials
        .iter()
        .map(|s| {
            parse_serial(s)
                .ok_or_else(|| anyhow::anyhow!("--serial: '{s}' is not a serial (decimal, or hex with 0x)"))
        })
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let mut failed = false;
    if !serials.is_empty() {
        let Backend::Local(a) = b else {
            anyhow::bail!("revoke --serial works on the data directory only (no --server)");
        };
        for serial in serials {
            match a.revoke_serial(&crate::local::actor(), serial, reason).await {
                Ok(r) => {
                    let whose = r.certname.map_or(String::new(), |n| format!(" of {n}"));
                    if r.revoked {
                        out.line(&format!(
                            "Revoked serial {serial} (0x{serial:X}){whose} (reason {reason})"
                        ));
                    } else {
                        out.line(&format!(
                            "Serial {serial} (0x{serial:X}){whose} is already revoked"
                        ));
                    }
                }
                Err(e) => {
                    failed = true;
                    out.error(&ca_server::error::Chain(&e).to_string());
                }
            }
        }
    }
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
                out.error(&format!("{e:#}"));
            }
        }
    }
    Ok(i32::from(failed))
}

/// A serial as an admin writes it: decimal, or hex with `0x` (as puppetserver's inventory prints it).
fn parse_serial(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}
