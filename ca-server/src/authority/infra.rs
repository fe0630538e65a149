//! Infrastructure nodes and their CRL (puppetserver's `enable-infra-crl`): agents only connect to
//! infrastructure nodes (compilers, replicas), so with `enable-infra-crl` they download a CRL of
//! those nodes' revocations only, a few entries instead of every agent's. The server's own TLS still
//! checks every revocation.

use super::{names, unix, AuditRecord, Authority, AuthorityError};

impl Authority {
    /// The infrastructure nodes' certnames.
    pub async fn infra_nodes(&self) -> Result<Vec<String>, AuthorityError> {
        Ok(self.store.infra_nodes().await?)
    }

    /// Adds and removes infrastructure nodes, then signs the infrastructure CRL (whose entries follow
    /// the list). Returns the nodes now listed.
    pub async fn set_infra_nodes(
        &self,
        actor: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>, AuthorityError> {
        for name in add {
            names::validate_certname(name)?;
        }
        let mut tx = self.store.write().await?;
        let now = unix(self.now());
        for (names, adding, action) in [(add, true, "infra-add"), (remove, false, "infra-remove")] {
            for name in names {
                if tx.set_infra_node(name, adding).await? {
                    tx.audit(&AuditRecord::ok(now, actor, action).on(name)).await?;
                }
            }
        }
        let number = self.revocations.sign_infra(&mut tx).await?;
        let detail = format!("infrastructure CRL number {number}");
        tx.audit(&AuditRecord::ok(now, actor, "infra-crl").detail(&detail))
            .await?;
        let nodes = tx.infra_nodes().await?;
        tx.commit().await?;
        Ok(nodes)
    }
}
