//! Publishing CRLs. A revocation costs one signature whatever the CRL's size: its entries are appended
//! to the previous CRL's encoded entries (found in the CRL itself, not decoded), and in the server the
//! CRL (megabytes at 100,000 entries) is stored after the revocation is acknowledged, by a background
//! writer that coalesces bursts. The revocation itself is durable at the acknowledgement: it is in the
//! committed transaction with the CRL number it was published under; should the process die before the
//! CRL is stored, the next start finds the stored CRL older than that number and signs a new one from
//! the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use time::{Duration, OffsetDateTime};

use super::{blocking, unix, Authority, AuthorityError};
use crate::ca::crl::{self, Reason, RevokedEntry};
use crate::storage::{CrlRow, Store, StoreError, WriteTx};

/// The background writer stores the newest CRL once no new one came for this long...
const STORE_DELAY: std::time::Duration = std::time::Duration::from_millis(200);
/// ...or once the oldest unstored one is this old, under a steady stream of revocations.
const STORE_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// A CRL signed in a write transaction, to be installed once that transaction commits.
#[derive(Debug)]
pub(crate) struct Published {
    pub row: Arc<CrlRow>,
    /// The CRL number before this one, and the serials this one adds to it.
    pub previous: Option<u64>,
    pub added: Vec<u64>,
    /// Whether the row was stored in the transaction (otherwise the background writer stores it).
    pub stored: bool,
}

/// The CRLs signed but not yet stored: only the newest matters.
#[derive(Debug, Default)]
pub(crate) struct CrlWriter {
    /// The newest CRL not stored, when it came, and when the oldest unstored one came.
    pending: Mutex<Option<(Arc<CrlRow>, Instant, Instant)>>,
    running: AtomicBool,
    /// Woken when the writer finds nothing left to store.
    idle: tokio::sync::Notify,
}

impl CrlWriter {
    fn schedule(self: &Arc<Self>, store: &Store, row: Arc<CrlRow>) {
        let now = Instant::now();
        if let Ok(mut p) = self.pending.lock() {
            match p.as_mut() {
                None => *p = Some((row, now, now)),
                Some((old, came, _)) if old.number < row.number => {
                    *old = row;
                    *came = now;
                }
                Some(_) => {}
            }
        }
        if !self.running.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            let store = store.clone();
            tokio::spawn(async move { me.run(store).await });
        }
    }

    async fn run(&self, store: Store) {
        loop {
            tokio::time::sleep(STORE_DELAY).await;
            // Writing megabytes takes the database's write lock: not while revocations keep coming.
            let next = self.pending.lock().ok().and_then(|mut p| {
                let due = p.as_ref().is_some_and(|(_, came, first)| {
                    came.elapsed() >= STORE_DELAY || first.elapsed() >= STORE_MAX_DELAY
                });
                if due || p.is_none() {
                    p.take().map(|(row, _, _)| Some(row))
                } else {
                    Some(None)
                }
            });
            let row = match next {
                Some(Some(row)) => row,
                Some(None) => continue,
                None => {
                    self.running.store(false, Ordering::Release);
                    // A CRL scheduled between the check and the store would wait: look once more.
                    let more = self.pending.lock().map(|p| p.is_some()).unwrap_or(false);
                    if more && !self.running.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    self.idle.notify_waiters();
                    return;
                }
            };
            if let Err(e) = store.store_crl_if_newer(&row).await {
                // Not lost: the revocations are committed, and the next start re-signs from them.
                tracing::error!(error = %e, crl_number = row.number, "could not store the CRL");
            }
        }
    }

    fn busy(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

impl Authority {
    /// From now on, revocations leave storing their CRL to a background writer (the server does this;
    /// the CLI, which exits right after, stores it in the revoking transaction).
    ///
    /// Not on PostgreSQL: there other replicas read the CRL number the moment the revocation commits,
    /// and a CRL row behind its number would look to them like a CRL lost by a crashed writer. There
    /// the CRL is stored in the revoking transaction, so number and CRL always move together.
    pub fn with_deferred_crl_storage(mut self) -> Self {
        self.defer_crl_storage = self.store.backend() == crate::storage::Backend::Sqlite;
        self
    }

    /// Waits until every CRL signed so far is stored (at shutdown).
    pub async fn flush_crls(&self) {
        while self.crl_writer.busy() {
            let idle = self.crl_writer.idle.notified();
            if !self.crl_writer.busy() {
                break;
            }
            // Bounded: the writer may have gone idle between the check and the wait.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), idle).await;
        }
    }

    /// Our revocations as of the latest CRL this process knows, for TLS.
    pub fn revoked_set(&self) -> &Arc<crl::RevokedSet> {
        &self.revoked
    }

    /// Records revocations of `serials` (those not revoked already) with their audit rows, and signs
    /// the next CRL. Install the result with [`Authority::install_crl`] after the commit.
    pub(crate) async fn revoke_serials(
        &self,
        tx: &mut WriteTx,
        actor: &str,
        certname: &str,
        serials: &[u64],
        reason: Reason,
    ) -> Result<Published, AuthorityError> {
        let now = self.now().replace_nanosecond(0).unwrap_or_else(|_| self.now());
        let mut added = Vec::with_capacity(serials.len());
        for &serial in serials {
            if tx
                .revoke(serial, Some(certname), unix(now), reason.code())
                .await?
            {
                added.push(RevokedEntry {
                    serial,
                    revoked_at: now,
                    reason,
                });
            }
            let audit = super::AuditRecord::ok(unix(now), actor, "revoke")
                .on(certname)
                .serial(serial);
            tx.audit(&audit.detail(&reason.to_string())).await?;
        }
        self.publish(tx, Some(added), self.defer_crl_storage).await
    }

    /// After the commit of a transaction that published `p`: TLS refuses the new revocations from
    /// the next handshake on, the CRL is served from memory, and stored unless it was.
    pub(crate) fn install_crl(&self, p: Published) {
        if let Some(previous) = p.previous {
            // When the set lags (a CRL from the CLI not seen yet), the next handshake's check replaces
            // it from this CRL.
            self.revoked.extend(previous, p.row.number, &p.added);
        }
        if let Ok(mut latest) = self.latest_crl.lock() {
            if latest.as_ref().is_none_or(|l| l.number < p.row.number) {
                *latest = Some(Arc::clone(&p.row));
            }
        }
        if !p.stored {
            self.crl_writer.schedule(&self.store, p.row);
        }
    }

    /// Re-signs the CRL from every revocation in the database now (after revocations were written
    /// without one, e.g. by a bulk load). Returns the new CRL number.
    pub async fn republish_crl(&self, actor: &str) -> Result<u64, AuthorityError> {
        let mut tx = self.store.write().await?;
        let row = self.publish_crl(&mut tx).await?;
        let detail = format!("CRL number {}", row.number);
        tx.audit(&super::AuditRecord::ok(unix(self.now()), actor, "crl-republish").detail(&detail))
            .await?;
        tx.commit().await?;
        Ok(row.number)
    }

    /// Signs and stores a new CRL from every revocation in the database, with the next CRL number.
    pub(crate) async fn publish_crl(&self, tx: &mut WriteTx) -> Result<CrlRow, AuthorityError> {
        let p = self.publish(tx, None, false).await?;
        Ok(CrlRow::clone(&p.row))
    }

    /// Signs the next CRL: the current one's entries plus `added`, or (`added` = `None`, or the
    /// current CRL unreadable) every revocation in the database.
    async fn publish(
        &self,
        tx: &mut WriteTx,
        added: Option<Vec<RevokedEntry>>,
        defer_storage: bool,
    ) -> Result<Published, AuthorityError> {
        let previous = tx.crl_number().await?;
        let added_serials: Vec<u64> = added.iter().flatten().map(|e| e.serial).collect();
        let base = match (&added, previous) {
            (Some(_), Some(n)) => self.crl_numbered(tx, n).await?,
            _ => None,
        };
        let appended = match (&added, &base) {
            (Some(new), Some(base)) => crl::read_crl(&base.der).map(|parts| {
                let mut der = Vec::with_capacity(parts.entries.len() + new.len() * 40);
                der.extend_from_slice(parts.entries);
                der.extend(crl::encode_entries(new));
                der
            }),
            _ => None,
        };
        // thisUpdate is backdated a second (agents whose clock runs a little behind accept the CRL at
        // once), but never before a revocation it lists: a CRL cannot be older than what it says.
        let (entries_der, newest) = match appended {
            Some(der) => {
                let added_newest = added.iter().flatten().map(|e| e.revoked_at).max();
                // The base's entries are no newer than its own thisUpdate.
                let base_this_update = base
                    .as_ref()
                    .and_then(|b| OffsetDateTime::from_unix_timestamp(b.this_update).ok());
                (der, added_newest.max(base_this_update))
            }
            None => {
                let all = self.all_revocations(tx).await?;
                let newest = all.iter().map(|e| e.revoked_at).max();
                (crl::encode_entries(&all), newest)
            }
        };
        let number = tx.next_crl_number().await?;
        let exact = self.now();
        let last_modified = tx
            .next_crl_last_modified(unix(exact) + i64::from(exact.nanosecond() > 0))
            .await?;
        let now = self.now().replace_nanosecond(0).unwrap_or_else(|_| self.now());
        let this_update = newest.map_or(now - Duration::seconds(1), |n| n.max(now - Duration::seconds(1)));
        let next_update = now + self.settings.crl_lifetime;
        let signer = Arc::clone(&self.signer);
        let der = blocking(move || {
            crl::sign_crl_with_entries(&signer, number, this_update, next_update, &entries_der)
        })
        .await?;
        let row = CrlRow {
            number,
            this_update: unix(this_update),
            next_update: unix(next_update),
            der,
            last_modified,
        };
        if !defer_storage {
            tx.store_crl(&row).await?;
        }
        Ok(Published {
            row: Arc::new(row),
            // Entries from the database replace, rather than extend, what TLS holds.
            previous: previous.filter(|_| base.is_some()),
            added: added_serials,
            stored: !defer_storage,
        })
    }

    /// The CRL numbered `number`, from memory or the database, when either holds it.
    async fn crl_numbered(
        &self,
        tx: &mut WriteTx,
        number: u64,
    ) -> Result<Option<Arc<CrlRow>>, AuthorityError> {
        if let Some(latest) = self.latest() {
            if latest.number == number {
                return Ok(Some(latest));
            }
        }
        Ok(tx.crl().await?.filter(|r| r.number == number).map(Arc::new))
    }

    async fn all_revocations(&self, tx: &mut WriteTx) -> Result<Vec<RevokedEntry>, AuthorityError> {
        let rows = tx.revocations().await?;
        let entries = rows
            .into_iter()
            .map(|r| {
                Ok(RevokedEntry {
                    serial: r.serial,
                    revoked_at: OffsetDateTime::from_unix_timestamp(r.revoked_at)
                        .map_err(|_| StoreError::Corrupt("revocation time".into()))?,
                    reason: Reason::from_code(r.reason).unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(entries)
    }

    fn latest(&self) -> Option<Arc<CrlRow>> {
        self.latest_crl.lock().ok().and_then(|l| l.clone())
    }

    /// The current CRL: the one this process signed last when it is the newest, else the stored one.
    /// A stored CRL older than the last number signed (a process died before storing it) is replaced
    /// by a new one signed from the database, so no committed revocation is ever missing.
    pub async fn crl(&self) -> Result<Arc<CrlRow>, AuthorityError> {
        if let Some(c) = self.known_current_crl().await? {
            return Ok(c);
        }
        // The revoking path holds this lock from its transaction until it installs its CRL: a CRL
        // signed but not yet installed is not taken for a lost one.
        let _one = self.crl_lock.lock().await;
        if let Some(c) = self.known_current_crl().await? {
            return Ok(c);
        }
        let number = self.republish_crl("crl-recovery").await?;
        tracing::warn!(
            crl_number = number,
            "the stored CRL was older than the last one signed: signed a new one from the database"
        );
        self.known_current_crl()
            .await?
            .ok_or_else(|| StoreError::Corrupt("no CRL has been published".into()).into())
    }

    async fn known_current_crl(&self) -> Result<Option<Arc<CrlRow>>, AuthorityError> {
        let Some(number) = self.store.crl_number().await? else {
            return Err(StoreError::Corrupt("no CRL has been published".into()).into());
        };
        if let Some(latest) = self.latest() {
            if latest.number == number {
                return Ok(Some(latest));
            }
        }
        let Some(row) = self.store.crl().await?.filter(|r| r.number == number) else {
            return Ok(None);
        };
        let row = Arc::new(row);
        if let Ok(mut latest) = self.latest_crl.lock() {
            if latest.as_ref().is_none_or(|l| l.number < row.number) {
                *latest = Some(Arc::clone(&row));
            }
        }
        Ok(Some(row))
    }
}
