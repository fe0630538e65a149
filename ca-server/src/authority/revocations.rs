//! The one owner of the revocation state: CRL numbering, signing, storage, recovery, the CRL as served
//! and the revoked serials TLS checks. It publishes immutable [`CrlSnapshot`]s; HTTP and TLS only read
//! them, and a new snapshot replaces the old one in one atomic swap, so a reader never sees a CRL
//! and a revoked set that disagree.
//!
//! A revocation costs one signature whatever the CRL's size: its entries are appended to the previous
//! CRL's encoded entries, and only what it adds is stored (the CRL is stored in pieces, see
//! `migrations/*/0004_crl_segments.sql`), in the revoking transaction, with the CRL number it takes.
//! Number and CRL therefore always move together, on one process or on many replicas of a shared
//! database; a replica that learns of another's revocation reads the pieces added since the CRL it
//! holds and never re-signs anything.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use time::{Duration, OffsetDateTime};

use super::ahead::Plan;
use super::{unix, AuthorityError};
use crate::ca::crl::{self, RevokedEntry, RevokedSerials};
use crate::ca::{pem_encode, CaSigner};
use crate::clock::Clock;
use crate::storage::crl_mark::{self, CrlMarkSeen};
use crate::storage::{CrlLayout, CrlRow, CrlUpdate, Store, StoreError, TwinPieces, WriteTx};

/// Our own CRL, as a snapshot holds it.
#[derive(Debug)]
struct OurCrl {
    row: CrlRow,
    /// Where its entries are in `row.der`.
    entries: Range<usize>,
    /// Stored in pieces: the next CRL may append to it (a CRL stored whole by an older version is
    /// followed by one signed from the database).
    appendable: bool,
    /// Its serials, as TLS checks them.
    revoked: RevokedSerials,
}

impl AsRef<[u8]> for OurCrl {
    /// Its entries.
    fn as_ref(&self) -> &[u8] {
        self.entries()
    }
}

impl OurCrl {
    fn entries(&self) -> &[u8] {
        &self.row.der[self.entries.clone()]
    }

    /// From a whole CRL (CPU work for a big one: call it off the executor).
    fn whole(row: CrlRow, appendable: bool) -> Result<OurCrl, AuthorityError> {
        let unreadable = || StoreError::Corrupt(format!("CRL {} is unreadable", row.number));
        let entries = crl::entries_range(&row.der).ok_or_else(unreadable)?;
        let revoked = RevokedSerials::from_entries(&row.der[entries.clone()]).ok_or_else(unreadable)?;
        Ok(OurCrl {
            row,
            entries,
            appendable,
            revoked,
        })
    }

    /// The CRL whose entries are ours followed by `added` (its `head` and `tail` around them).
    fn appended(
        &self,
        mut row: CrlRow,
        head: &[u8],
        added: &[u8],
        tail: &[u8],
    ) -> Result<OurCrl, AuthorityError> {
        let held = self.entries();
        let mut der = Vec::with_capacity(head.len() + held.len() + added.len() + tail.len());
        der.extend_from_slice(head);
        der.extend_from_slice(held);
        der.extend_from_slice(added);
        der.extend_from_slice(tail);
        let entries = head.len()..head.len() + held.len() + added.len();
        // What was rebuilt must be the CRL that was signed: its number says so.
        if crl::read_crl(&der).and_then(|p| p.number) != Some(row.number) {
            return Err(StoreError::Corrupt(format!(
                "CRL {} does not rebuild from its pieces on top of CRL {}",
                row.number, self.row.number
            ))
            .into());
        }
        let revoked = self
            .revoked
            .with_entries(added)
            .ok_or_else(|| StoreError::Corrupt(format!("CRL {}: unreadable entries", row.number)))?;
        row.der = der;
        Ok(OurCrl {
            row,
            entries,
            appendable: true,
            revoked,
        })
    }
}

/// The CRLs served besides ours: the parent CAs' (after ours), and the infrastructure CRL (instead
/// of ours with `enable-infra-crl`).
#[derive(Debug, Default)]
struct ParentCrls {
    /// The database's counter of changes to these (-1: not read yet).
    version: i64,
    ders: Vec<Vec<u8>>,
    infra: Option<Vec<u8>>,
    last_modified: i64,
}

/// What HTTP and TLS know of revocation, as of one CRL of ours and one version of the parents' CRLs.
/// Never changes once published.
#[derive(Debug)]
pub struct CrlSnapshot {
    ours: Arc<OurCrl>,
    parents: Arc<ParentCrls>,
    /// Serve the infrastructure CRL in place of ours (`enable-infra-crl`), once there is one.
    serve_infra: bool,
    /// The CRL chain as served, PEM, encoded on first use.
    pem: OnceLock<Arc<[u8]>>,
    /// The relying parties' CRL, DER and PEM, signed on first use.
    relying: OnceLock<RelyingCrl>,
    /// What signs the relying parties' CRL.
    signer: Arc<CaSigner>,
}

/// The relying parties' CRL as served at `/crl.der` and `/crl.pem`.
#[derive(Debug, Clone)]
pub struct RelyingCrl {
    /// DER.
    pub der: Arc<[u8]>,
    /// PEM.
    pub pem: Arc<[u8]>,
    /// Its nextUpdate (Unix seconds).
    pub next_update: i64,
}

impl CrlSnapshot {
    /// Our CRL.
    pub fn row(&self) -> &CrlRow {
        &self.ours.row
    }

    /// Our CRL's number.
    pub fn number(&self) -> u64 {
        self.ours.row.number
    }

    /// Our revoked serials.
    pub fn revoked(&self) -> &RevokedSerials {
        &self.ours.revoked
    }

    /// The parents' CRLs (DER), direct parent first.
    pub fn parent_crls(&self) -> &[Vec<u8>] {
        &self.parents.ders
    }

    /// The version of the parents' CRLs (changes whenever one does).
    pub fn parents_version(&self) -> i64 {
        self.parents.version
    }

    /// `Last-Modified` of the CRL chain: fixed when each CRL was signed, the same on every process and
    /// replica, so an `If-Modified-Since` taken from an older CRL never matches a newer one.
    pub fn last_modified(&self) -> SystemTime {
        let row = &self.ours.row;
        let ours = if row.last_modified > 0 {
            row.last_modified
        } else {
            row.this_update + 1
        };
        let secs = u64::try_from(ours.max(self.parents.last_modified)).unwrap_or(0);
        SystemTime::UNIX_EPOCH
            .checked_add(std::time::Duration::from_secs(secs))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The CRL chain as served (ours, or the infrastructure CRL with `enable-infra-crl`, first, then
    /// each parent's), PEM; encoded on the first call
    /// (megabytes at 100,000 entries: call it off the executor unless [`CrlSnapshot::encoded_pem`]
    /// has it).
    pub fn pem(&self) -> Arc<[u8]> {
        Arc::clone(self.pem.get_or_init(|| {
            let first = match (&self.parents.infra, self.serve_infra) {
                (Some(infra), true) => infra,
                _ => &self.ours.row.der,
            };
            let mut pem = pem_encode("X509 CRL", first);
            // During a key rollover, ours signed by the previous key too (for certificates it issued).
            if let (Some(twin), false) = (
                &self.ours.row.previous,
                self.serve_infra && self.parents.infra.is_some(),
            ) {
                let der = around(&twin.head, self.ours.entries(), &twin.tail);
                pem.push_str(&pem_encode("X509 CRL", &der));
            }
            for d in &self.parents.ders {
                pem.push_str(&pem_encode("X509 CRL", d));
            }
            Arc::from(pem.into_bytes())
        }))
    }

    /// The PEM, when already encoded.
    pub fn encoded_pem(&self) -> Option<Arc<[u8]>> {
        self.pem.get().map(Arc::clone)
    }

    /// The relying parties' CRL: our CRL's number, thisUpdate and entries with the short nextUpdate
    /// stored with it (`None` while our CRL was signed by a version without one, until the next
    /// CRL). Signed on the first call, where it is served: a revocation does not wait for it, and
    /// everything it holds comes from the stored CRL, so every replica signs the same TBSCertList
    /// (byte-identical CRLs with an RSA CA key, whose signatures are deterministic). One signature
    /// and megabytes at 100,000 entries: call it off the executor unless
    /// [`CrlSnapshot::assembled_relying`] has it.
    pub fn relying(&self) -> Result<Option<RelyingCrl>, AuthorityError> {
        if let Some(r) = self.relying.get() {
            return Ok(Some(r.clone()));
        }
        let Some(next_update) = self.ours.row.relying_next_update else {
            return Ok(None);
        };
        let at = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map_err(|_| AuthorityError::from(StoreError::Corrupt("CRL dates out of range".into())))
        };
        let row = &self.ours.row;
        let der = crl::sign_crl_with_entries(
            &self.signer,
            row.number,
            at(row.this_update)?,
            at(next_update)?,
            self.ours.entries(),
        )?;
        let pem = pem_encode("X509 CRL", &der).into_bytes();
        // Two first callers at once both sign; the first one's is kept.
        let _ = self.relying.set(RelyingCrl {
            der: Arc::from(der),
            pem: Arc::from(pem),
            next_update,
        });
        Ok(self.relying.get().cloned())
    }

    /// The relying parties' CRL, when already signed.
    pub fn assembled_relying(&self) -> Option<RelyingCrl> {
        self.relying.get().cloned()
    }

    /// The relying parties' CRL's nextUpdate (`None`: there is none yet).
    pub fn relying_next_update(&self) -> Option<i64> {
        self.ours.row.relying_next_update
    }

    fn is_at(&self, version: (Option<i64>, i64)) -> bool {
        i64::try_from(self.number()).ok() == version.0 && self.parents.version == version.1
    }
}

/// A CRL signed and stored in a write transaction, to be installed with [`Revocations::install`]
/// once that transaction commits.
#[derive(Debug)]
pub(crate) struct Signed {
    ours: Arc<OurCrl>,
}

impl Signed {
    /// Its number.
    pub(crate) fn number(&self) -> u64 {
        self.ours.row.number
    }
}

/// The owner of the revocation state (one per process, shared by the authority's clones).
pub struct Revocations {
    store: Store,
    signer: Arc<CaSigner>,
    /// During a key rollover (after `switch`): the previous CA, which signs each CRL too.
    previous: Option<Arc<CaSigner>>,
    clock: Arc<dyn Clock>,
    settings: Arc<arc_swap::ArcSwap<super::CaSettings>>,
    current: ArcSwapOption<CrlSnapshot>,
    /// One reload from the database at a time.
    reload: tokio::sync::Mutex<()>,
    /// Held from a publishing transaction's start until its CRL is installed, so snapshots are
    /// installed in the order their CRLs were numbered.
    publishing: tokio::sync::Mutex<()>,
    /// The next CRL's start, made while one is signed.
    ahead: Arc<super::ahead::Ahead>,
    /// SQLite: `<database>-crl` as seen before the last read of the database that succeeded, and
    /// when (see [`Revocations::refresh_if_changed`]).
    checked: std::sync::Mutex<Option<(CrlMarkSeen, std::time::Instant)>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("crl_number", &self.snapshot().map(|s| s.number()))
            .finish_non_exhaustive()
    }
}

async fn off_executor<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthorityError> + Send + 'static,
) -> Result<T, AuthorityError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthorityError::failed("CRL task failed", e))?
}

impl Revocations {
    pub(crate) fn new(
        store: Store,
        signer: Arc<CaSigner>,
        previous: Option<Arc<CaSigner>>,
        clock: Arc<dyn Clock>,
        settings: Arc<arc_swap::ArcSwap<super::CaSettings>>,
    ) -> Self {
        Revocations {
            store,
            signer,
            previous,
            clock,
            settings,
            current: ArcSwapOption::empty(),
            reload: tokio::sync::Mutex::new(()),
            publishing: tokio::sync::Mutex::new(()),
            ahead: Arc::default(),
            checked: std::sync::Mutex::new(None),
        }
    }

    /// The snapshot published last, without asking the database (`None` before the first
    /// [`Revocations::refresh`] or publication).
    pub fn snapshot(&self) -> Option<Arc<CrlSnapshot>> {
        self.current.load_full()
    }

    /// [`Revocations::refresh`], skipped on SQLite while `<database>-crl` is as it was before the
    /// last read of the database that succeeded, less than [`crl_mark::RECHECK`] ago: every commit
    /// that changes the CRLs, in any process, grows that file before it returns (see
    /// [`crate::storage::crl_mark`]). For each request and handshake: a revocation by `ca revoke` on
    /// the database is in force for the next one, for one `stat` instead of a database read.
    pub async fn refresh_if_changed(&self) -> Result<Arc<CrlSnapshot>, AuthorityError> {
        let seen = self.store.crl_mark_seen();
        if let (Some(seen), Some(s)) = (seen, self.snapshot()) {
            let checked = *self
                .checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if checked.is_some_and(|(m, at)| m == seen && at.elapsed() < crl_mark::RECHECK) {
                return Ok(s);
            }
        }
        // Seen before the read: a change made during the read shows at the next call.
        let started = std::time::Instant::now();
        let s = self.refresh().await?;
        if let Some(seen) = seen {
            *self
                .checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((seen, started));
        }
        Ok(s)
    }

    /// Brings the snapshot up to date with the database (one cheap read when nothing changed; else
    /// what changed: the entries appended since, new parent CRLs) and returns it. A CRL number ahead
    /// of the stored CRL (left by a version that stored CRLs after the revocation's commit, whose
    /// process died in between) is repaired by signing a CRL from the database.
    pub async fn refresh(&self) -> Result<Arc<CrlSnapshot>, AuthorityError> {
        let version = self.store.crl_version().await?;
        if let Some(s) = self.snapshot().filter(|s| s.is_at(version)) {
            return Ok(s);
        }
        let _one = self.reload.lock().await;
        let version = self.store.crl_version().await?;
        let current = self.snapshot();
        if let Some(s) = current.as_ref().filter(|s| s.is_at(version)) {
            return Ok(Arc::clone(s));
        }
        let held = current.as_ref().map(|s| Arc::clone(&s.ours));
        let ours = match held
            .as_ref()
            .filter(|o| i64::try_from(o.row.number).ok() == version.0)
        {
            Some(o) => Arc::clone(o),
            None => {
                let update = self.store.crl_since(held.as_ref().map(|o| o.row.number)).await?;
                let ours = self.apply(held, update).await?;
                if version
                    .0
                    .is_some_and(|n| n > i64::try_from(ours.row.number).unwrap_or(i64::MAX))
                {
                    self.recover().await?
                } else {
                    ours
                }
            }
        };
        let parents = match current.as_ref().filter(|s| s.parents.version == version.1) {
            Some(s) => Arc::clone(&s.parents),
            None => Arc::new(ParentCrls {
                version: version.1,
                ders: self.store.parent_crls().await?,
                infra: self.store.infra_crl().await?.map(|r| r.der),
                last_modified: self.store.parent_crls_last_modified().await?,
            }),
        };
        Ok(self.publish_snapshot(ours, Some(parents)))
    }

    /// Our CRL after `update` to `held`.
    async fn apply(
        &self,
        held: Option<Arc<OurCrl>>,
        update: CrlUpdate,
    ) -> Result<Arc<OurCrl>, AuthorityError> {
        let ours = match (update, held) {
            (CrlUpdate::Unchanged, Some(h)) => return Ok(h),
            (
                CrlUpdate::Appended {
                    row,
                    head,
                    added,
                    tail,
                },
                Some(h),
            ) => off_executor(move || h.appended(row, &head, &added, &tail)).await?,
            (CrlUpdate::Whole { row, pieces }, _) => off_executor(move || OurCrl::whole(row, pieces)).await?,
            (_, None) => {
                return Err(AuthorityError::Internal(
                    "a CRL update without the CRL it updates".into(),
                ))
            }
        };
        Ok(Arc::new(ours))
    }

    /// Signs a CRL from the database when the stored one is behind the CRL number.
    async fn recover(&self) -> Result<Arc<OurCrl>, AuthorityError> {
        let _order = self.publishing().await;
        let mut tx = self.store.write().await?;
        let counter = tx.crl_number().await?;
        let stored = tx.crl_dates().await?.map(|(number, ..)| number);
        if counter.is_some() && stored == counter {
            // Repaired meanwhile (by another process): read it.
            drop(tx);
            let update = self.store.crl_since(None).await?;
            return self.apply(None, update).await;
        }
        let now = self.clock.now();
        let signed = self.sign_next(&mut tx, None, now).await?;
        let detail = format!("CRL number {}", signed.number());
        tx.audit(&super::AuditRecord::ok(unix(now), "ca-server", "crl-recovery").detail(&detail))
            .await?;
        tx.commit().await?;
        tracing::warn!(
            crl_number = signed.number(),
            "the stored CRL was older than the last one signed: signed a new one from the database"
        );
        let ours = Arc::clone(&signed.ours);
        self.install(signed);
        Ok(ours)
    }

    /// How many CRLs were signed from a start made ahead (see [`super::ahead`]).
    #[cfg(test)]
    pub(crate) fn started_ahead(&self) -> u64 {
        self.ahead.used()
    }

    /// Held by whoever signs a CRL, from before its transaction until [`Revocations::install`].
    pub(crate) async fn publishing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.publishing.lock().await
    }

    /// Signs and stores, in `tx`, the next CRL: the current one's entries followed by `added`, or
    /// (`added` = `None`, or a current CRL that cannot be appended to) every revocation in the
    /// database; signed at `now`. Install it with [`Revocations::install`] once `tx` commits.
    pub(crate) async fn sign_next(
        &self,
        tx: &mut WriteTx,
        added: Option<Vec<RevokedEntry>>,
        now: OffsetDateTime,
    ) -> Result<Signed, AuthorityError> {
        let previous = tx.crl_number().await?;
        let base = match (&added, previous) {
            (Some(_), Some(n)) => self.current_in(tx, n).await?.filter(|b| b.appendable),
            _ => None,
        };
        let (base, added) = match (base, added) {
            (Some(b), Some(a)) => (Some(b), a),
            _ => (None, Vec::new()),
        };
        // thisUpdate is backdated a second (agents whose clock runs a little behind accept the CRL at
        // once), but never before a revocation it lists: a CRL cannot be older than what it says.
        let (all, newest) = match &base {
            Some(b) => {
                let base_this_update = OffsetDateTime::from_unix_timestamp(b.row.this_update).ok();
                (
                    None,
                    added.iter().map(|e| e.revoked_at).max().max(base_this_update),
                )
            }
            None => {
                let all = all_revocations(tx).await?;
                let newest = all.iter().map(|e| e.revoked_at).max();
                (Some(all), newest)
            }
        };
        let number = tx.next_crl_number().await?;
        let exact = now;
        let last_modified = tx
            .next_crl_last_modified(unix(exact) + i64::from(exact.nanosecond() > 0))
            .await?;
        let now = exact.replace_nanosecond(0).unwrap_or(exact);
        let this_update = newest.map_or(now - Duration::seconds(1), |n| n.max(now - Duration::seconds(1)));
        let settings = self.settings.load();
        let next_update = now + settings.crl_lifetime;
        let relying_next_update = now + settings.relying_crl_lifetime;
        let signer = Arc::clone(&self.signer);
        let previous = self.previous.clone();
        let base_for_task = base.clone();
        let ahead = Arc::clone(&self.ahead);
        let clock = Arc::clone(&self.clock);
        let crl_lifetime = settings.crl_lifetime;
        let added_serials: Vec<u64> = added.iter().map(|e| e.serial).collect();
        // Encoding, signing and (for a CRL from the database) reading every serial: off the executor.
        let (der, entries, revoked, twin) = off_executor(move || {
            // The entries as parts: the current CRL's (megabytes, never copied here) and the new ones,
            // or every revocation in the database.
            let (new_der, revoked, last) = match (&base_for_task, all) {
                (Some(b), _) => {
                    let serials: Vec<u64> = added.iter().map(|e| e.serial).collect();
                    let last = added.last().cloned();
                    (
                        crl::encode_entries(&added),
                        b.revoked.with_serials(&serials),
                        last,
                    )
                }
                (None, all) => {
                    let all = all.unwrap_or_default();
                    let der = crl::encode_entries(&all);
                    let revoked = RevokedSerials::from_entries(&der)
                        .ok_or_else(|| AuthorityError::Internal("CRL entries unreadable".into()))?;
                    (der, revoked, all.last().cloned())
                }
            };
            let new_der = Arc::new(new_der);
            let parts: Vec<&[u8]> = match &base_for_task {
                Some(b) => vec![b.entries(), &new_der],
                None => vec![&new_der],
            };
            let entries_len: usize = parts.iter().map(|p| p.len()).sum();
            // This CRL's start, when it was made ahead as predicted: claimed now, finished (when
            // its thread had not finished it) once the next one's is under way on another core.
            let claimed = base_for_task.as_ref().and_then(|b| {
                ahead.claim(&Plan {
                    base: (b.row.number, b.entries().len()),
                    number,
                    this_update: unix(this_update),
                    next_update: unix(next_update),
                    entries_len,
                })
            });
            // The next one's, on another core while this one is signed.
            let plans = next_plans(
                &signer,
                number,
                entries_len,
                last,
                clock.now(),
                ahead.pace(AHEAD_KEPT),
                crl_lifetime,
                spare_core(),
            );
            if !plans.is_empty() {
                let mut known: Vec<Arc<dyn AsRef<[u8]> + Send + Sync>> = Vec::with_capacity(2);
                if let Some(b) = &base_for_task {
                    known.push(Arc::clone(b) as _);
                }
                known.push(Arc::clone(&new_der) as _);
                ahead.start(&signer, &plans, &known);
            }
            let prepared = claimed.and_then(super::ahead::Claimed::finish);
            // In a key rollover, ours signed by the previous key too, beside ours on another core: a
            // revocation still waits for about one signature. (The relying parties' CRL is signed
            // where it is served, see `CrlSnapshot::relying`.)
            let (der, twin) = std::thread::scope(|s| {
                let twin = previous.as_ref().map(|p| {
                    s.spawn(|| crl::sign_crl_with_entry_parts(p, number, this_update, next_update, &parts))
                });
                let der = match prepared {
                    Some(p) => crl::sign_prepared(&signer, p, number, this_update, next_update, &new_der),
                    None => Ok(None),
                }
                .and_then(|made| match made {
                    Some(der) => Ok(der),
                    None => crl::sign_crl_with_entry_parts(&signer, number, this_update, next_update, &parts),
                });
                let twin = twin
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            Err(crate::ca::CaError::Key("the CRL signing thread failed".into()))
                        })
                    })
                    .transpose();
                (der, twin)
            });
            let (der, twin) = (
                der.map_err(AuthorityError::Ca)?,
                twin.map_err(AuthorityError::Ca)?,
            );
            let unreadable = || AuthorityError::Internal("the signed CRL is unreadable".into());
            let entries = crl::entries_range(&der).ok_or_else(unreadable)?;
            let twin = twin.map(|t| pieces_of(&t).ok_or_else(unreadable)).transpose()?;
            Ok((der, entries, revoked, twin))
        })
        .await?;
        let row = CrlRow {
            number,
            this_update: unix(this_update),
            next_update: unix(next_update),
            der,
            last_modified,
            relying_next_update: Some(unix(relying_next_update)),
            previous: twin,
        };
        let layout = CrlLayout {
            entries: entries.clone(),
            appends_to: base.as_ref().map(|b| (b.row.number, b.entries.len())),
        };
        tx.store_crl(&row, &layout).await?;
        // The infrastructure CRL follows when this CRL adds an infrastructure node's revocation, or
        // is signed from the database (a refresh, a prune...).
        let infra = match &base {
            Some(_) => tx.any_infra_serial(&added_serials).await?,
            None => !tx.infra_nodes().await?.is_empty() || tx.infra_crl().await?.is_some(),
        };
        if infra {
            self.sign_infra(tx).await?;
        }
        Ok(Signed {
            ours: Arc::new(OurCrl {
                row,
                entries,
                appendable: true,
                revoked,
            }),
        })
    }

    /// Signs and stores, in `tx`, the next infrastructure CRL: every revocation of an infrastructure
    /// node's certificate (a handful: signed whole each time). Readers reload it with the parents'.
    pub(crate) async fn sign_infra(&self, tx: &mut WriteTx) -> Result<u64, AuthorityError> {
        let entries = entries_of(tx.infra_revocations().await?)?;
        let number = tx.infra_crl().await?.map_or(0, |r| r.number + 1);
        let exact = self.clock.now();
        let now = exact.replace_nanosecond(0).unwrap_or(exact);
        let newest = entries.iter().map(|e| e.revoked_at).max();
        let this_update = newest.map_or(now - Duration::seconds(1), |n| n.max(now - Duration::seconds(1)));
        let next_update = now + self.settings.load().crl_lifetime;
        let signer = Arc::clone(&self.signer);
        let der = off_executor(move || {
            crl::sign_crl(&signer, number, this_update, next_update, &entries).map_err(AuthorityError::Ca)
        })
        .await?;
        tx.store_infra_crl(&CrlRow {
            number,
            this_update: unix(this_update),
            next_update: unix(next_update),
            der,
            last_modified: 0,
            relying_next_update: None,
            previous: None,
        })
        .await?;
        Ok(number)
    }

    /// Our CRL numbered `number` as `tx` sees it: the snapshot's when it is at that number, else the
    /// snapshot brought up to date by what was appended since (another process or replica revoked).
    async fn current_in(&self, tx: &mut WriteTx, number: u64) -> Result<Option<Arc<OurCrl>>, AuthorityError> {
        let held = self.snapshot().map(|s| Arc::clone(&s.ours));
        if let Some(h) = held.as_ref().filter(|h| h.row.number == number) {
            return Ok(Some(Arc::clone(h)));
        }
        let update = tx.crl_since(held.as_ref().map(|h| h.row.number)).await?;
        let ours = self.apply(held, update).await?;
        Ok((ours.row.number == number).then_some(ours))
    }

    /// After the commit of the transaction that signed it: the CRL and its revocations are in force
    /// for every reader from now on.
    pub(crate) fn install(&self, signed: Signed) {
        self.ahead.confirm(signed.number());
        self.publish_snapshot(signed.ours, None);
    }

    /// After a reload: a snapshot that serves what the settings now say (`enable-infra-crl`).
    pub fn settings_changed(&self) {
        if let Some(s) = self.snapshot() {
            self.publish_snapshot(Arc::clone(&s.ours), None);
        }
    }

    /// Publishes a snapshot made of the newer of each part (ours by CRL number, the parents' by
    /// version) between what is given and what is current, and returns what is current then.
    fn publish_snapshot(&self, ours: Arc<OurCrl>, parents: Option<Arc<ParentCrls>>) -> Arc<CrlSnapshot> {
        let pick = |cur: Option<&Arc<CrlSnapshot>>| -> Arc<CrlSnapshot> {
            let new_ours = match cur {
                Some(c) if c.ours.row.number >= ours.row.number => Arc::clone(&c.ours),
                _ => Arc::clone(&ours),
            };
            let new_parents = match (parents.as_ref(), cur) {
                (Some(p), Some(c)) if c.parents.version >= p.version => Arc::clone(&c.parents),
                (Some(p), _) => Arc::clone(p),
                (None, Some(c)) => Arc::clone(&c.parents),
                // Not read yet: the next refresh reads them.
                (None, None) => Arc::new(ParentCrls {
                    version: -1,
                    ..ParentCrls::default()
                }),
            };
            let serve_infra = self.settings.load().enable_infra_crl;
            match cur {
                Some(c)
                    if Arc::ptr_eq(&c.ours, &new_ours)
                        && Arc::ptr_eq(&c.parents, &new_parents)
                        && c.serve_infra == serve_infra =>
                {
                    Arc::clone(c)
                }
                _ => {
                    // The relying parties' CRL depends on ours only: kept when only the parents'
                    // CRLs or the settings changed, rather than signed again.
                    let relying = OnceLock::new();
                    if let Some(r) = cur
                        .filter(|c| Arc::ptr_eq(&c.ours, &new_ours))
                        .and_then(|c| c.relying.get())
                    {
                        let _ = relying.set(r.clone());
                    }
                    Arc::new(CrlSnapshot {
                        ours: new_ours,
                        parents: new_parents,
                        serve_infra,
                        pem: OnceLock::new(),
                        relying,
                        signer: Arc::clone(&self.signer),
                    })
                }
            }
        };
        let mut cur = self.current.load_full();
        loop {
            let new = pick(cur.as_ref());
            let prev = self.current.compare_and_swap(&cur, Some(Arc::clone(&new)));
            let swapped = match (&*prev, &cur) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if swapped {
                return new;
            }
            cur = arc_swap::Guard::into_inner(prev);
        }
    }
}

/// From this many bytes of entries (some 7,000), the next CRL's start is made ahead (see
/// [`super::ahead`]); below, hashing them costs less than starting a thread.
const AHEAD_FROM: usize = 256 * 1024;

/// Whether this process has two cores or more, for a second plan (see [`next_plans`]); read once
/// (it reads the cgroup's CPU quota).
fn spare_core() -> bool {
    static SPARE: OnceLock<bool> = OnceLock::new();
    *SPARE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2))
}

/// The least uncertainty on when the next revocation comes (see [`next_plans`]).
const AHEAD_MARGIN: std::time::Duration = std::time::Duration::from_millis(2);

/// How long at most a start made ahead waits to be taken.
const AHEAD_KEPT: std::time::Duration = std::time::Duration::from_millis(250);

/// What to begin ahead after CRL `number` of `entries_len` bytes of entries, whose last is `last`,
/// signed at `now`, the next revocation being expected `pace` later: the next CRL with one more
/// entry like the last, dated the second the next revocation is expected in, and how long to keep it
/// (until that second ends; in a burst the next revocation comes within milliseconds, so megabytes,
/// 40 at 1,000,000 entries, are not held longer than [`AHEAD_KEPT`]). When the next revocation may
/// as well come in the second before or after (expected within half a pace of their boundary; a
/// revocation's pace moves by that much), that second's CRL too: otherwise it would be signed whole,
/// its megabytes hashed while it waits; not on one core (`spare_core` false), where the two would
/// take turns with the revocation itself. Nothing for a small CRL or a key that cannot sign a digest.
#[allow(clippy::too_many_arguments)]
fn next_plans(
    signer: &CaSigner,
    number: u64,
    entries_len: usize,
    last: Option<RevokedEntry>,
    now: OffsetDateTime,
    pace: std::time::Duration,
    crl_lifetime: Duration,
    spare_core: bool,
) -> Vec<(Plan, std::time::Duration)> {
    let Some(last) = last else {
        return Vec::new();
    };
    if entries_len < AHEAD_FROM || !signer.can_sign_digests() {
        return Vec::new();
    }
    let Some(next_number) = number.checked_add(1) else {
        return Vec::new();
    };
    let second_of = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap_or(t);
    let pace = pace.min(AHEAD_KEPT);
    let expected = now + pace;
    let margin = (pace / 2).max(AHEAD_MARGIN);
    let earliest = second_of(now);
    let mut seconds = vec![second_of(expected)];
    for other in [second_of(expected - margin), second_of(expected + margin)] {
        if spare_core && other >= earliest && !seconds.contains(&other) {
            seconds.push(other);
        }
    }
    let next_entries_len = entries_len + crl::encode_entries(&[last]).len();
    seconds
        .into_iter()
        .map(|second| {
            let plan = Plan {
                base: (number, entries_len),
                number: next_number,
                this_update: unix(second),
                next_update: unix(second + crl_lifetime),
                entries_len: next_entries_len,
            };
            let keep = std::time::Duration::try_from(second + Duration::seconds(1) - now)
                .unwrap_or_default()
                .min(AHEAD_KEPT);
            (plan, keep)
        })
        .collect()
}

/// A CRL made of `head`, the shared `entries` and `tail` (a rollover's twin).
fn around(head: &[u8], entries: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut der = Vec::with_capacity(head.len() + entries.len() + tail.len());
    der.extend_from_slice(head);
    der.extend_from_slice(entries);
    der.extend_from_slice(tail);
    der
}

/// What a CRL holds before and after its entries, to store beside ours (which has the same entries).
fn pieces_of(der: &[u8]) -> Option<TwinPieces> {
    let entries = crl::entries_range(der)?;
    Some(TwinPieces {
        head: der[..entries.start].to_vec(),
        tail: der[entries.end..].to_vec(),
    })
}

async fn all_revocations(tx: &mut WriteTx) -> Result<Vec<RevokedEntry>, AuthorityError> {
    entries_of(tx.revocations().await?)
}

/// CRL entries from stored revocations.
fn entries_of(rows: Vec<crate::storage::RevocationRow>) -> Result<Vec<RevokedEntry>, AuthorityError> {
    let entries = rows
        .into_iter()
        .map(|r| {
            Ok(RevokedEntry {
                serial: r.serial,
                revoked_at: OffsetDateTime::from_unix_timestamp(r.revoked_at)
                    .map_err(|_| StoreError::Corrupt("revocation time".into()))?,
                reason: crl::Reason::from_code(r.reason).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start begun ahead is dated the second the next revocation is expected in: the same second
    /// in a burst, the next when the pace of the last two crosses the second's end (one CRL per
    /// second was signed whole before), and it is kept until that second ends, at most 250 ms. When
    /// the next revocation is expected within half a pace of a second's end, the other second's CRL
    /// is begun too (one in fifty was signed whole before, at 30 ms a revocation).
    #[test]
    fn the_next_start_is_dated_when_the_next_revocation_is_expected() {
        let key = crate::ca::keys::generate(crate::ca::keys::KeyType::EcP256).unwrap();
        let t = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let der =
            crate::ca::signer::self_signed_ca("Puppet CA: plan", &key, 1, t, Duration::days(9)).unwrap();
        let signer = CaSigner::new(&crate::ca::pem_encode("CERTIFICATE", &der), key).unwrap();
        let last = RevokedEntry {
            serial: 77,
            revoked_at: t,
            reason: Default::default(),
        };
        let ms = std::time::Duration::from_millis;
        let plans_on = |now_ms: i64, pace, spare_core| {
            next_plans(
                &signer,
                4,
                AHEAD_FROM,
                Some(last.clone()),
                t + Duration::milliseconds(now_ms),
                pace,
                Duration::days(5),
                spare_core,
            )
        };
        let plans = |now_ms: i64, pace| plans_on(now_ms, pace, true);
        let dated = |plans: Vec<(Plan, std::time::Duration)>| -> Vec<(i64, std::time::Duration)> {
            plans
                .iter()
                .map(|(p, keep)| (p.this_update - unix(t), *keep))
                .collect()
        };
        // Mid-second, a burst: this second, kept 250 ms.
        let one = plans(500, ms(5));
        let (p, keep) = one[0];
        assert_eq!(one.len(), 1);
        assert_eq!((p.number, p.this_update, p.base), (5, unix(t), (4, AHEAD_FROM)));
        assert_eq!(p.next_update, unix(t + Duration::days(5)));
        assert_eq!(keep, AHEAD_KEPT);
        // 2 ms before the second ends, 5 ms apart: the next second, kept until it ends (250 ms).
        assert_eq!(dated(plans(998, ms(5))), [(1, AHEAD_KEPT)]);
        // 20 ms apart, expected 5 ms into the next second: that one first, and this one (kept the 15
        // ms left of it).
        assert_eq!(dated(plans(985, ms(20))), [(1, AHEAD_KEPT), (0, ms(15))]);
        // 1 ms apart, 2 ms before the end: this second, kept the 2 ms left, and the next.
        assert_eq!(dated(plans(998, ms(1))), [(0, ms(2)), (1, AHEAD_KEPT)]);
        // A pace over 250 ms counts as 250 ms: at 700 ms, expected at 950 give or take 125.
        assert_eq!(dated(plans(700, ms(900))), [(0, AHEAD_KEPT), (1, AHEAD_KEPT)]);
        // On one core, the expected second only.
        assert_eq!(dated(plans_on(998, ms(1), false)), [(0, ms(2))]);
        // Never a second already over.
        assert_eq!(dated(plans(1, ms(0))), [(0, AHEAD_KEPT)]);
        // A small CRL: nothing ahead.
        assert!(next_plans(
            &signer,
            4,
            AHEAD_FROM - 1,
            Some(last.clone()),
            t,
            ms(5),
            Duration::days(5),
            true
        )
        .is_empty());
    }
}
