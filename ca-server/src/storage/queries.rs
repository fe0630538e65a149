//! The SQL. Runtime-checked queries (`query_as` + `FromRow`); the schema is in `migrations/`.

use sqlx::{Any, Executor, Row};
use sqlx::{AnyConnection, AnyPool};

use super::direct::{self, Val};
use super::StoreError;

/// A connection a batched writer's transaction runs on (see [`super::direct`]): sqlx's, or one
/// driven directly (SQLite). Only the statements those transactions need take it.
pub(super) enum Conn<'c> {
    Sqlx(&'c mut AnyConnection),
    Direct(&'c mut rusqlite::Connection),
}

/// A row's columns, read the same from either driver; `None` for SQL `NULL`.
pub(super) trait Cells {
    fn int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError>;
}

impl Cells for sqlx::any::AnyRow {
    fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

impl Cells for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(i)?)
    }
}

/// A column that may not be `NULL`.
fn present<T>(v: Option<T>, what: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Corrupt(format!("{what} is missing")))
}

impl Conn<'_> {
    /// Runs `sql` with `args` (`$N` is `args[N - 1]`), `each` called on every row.
    async fn rows(
        &mut self,
        sql: &str,
        args: &[Val<'_>],
        mut each: impl FnMut(&dyn Cells) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Conn::Sqlx(c) => {
                for r in sqlx::query_with(sql, any_args(args)?).fetch_all(&mut **c).await? {
                    each(&r)?;
                }
            }
            Conn::Direct(c) => {
                let mut st = direct::prepare(c, sql, args)?;
                let mut rows = st.raw_query();
                while let Some(r) = rows.next()? {
                    each(r)?;
                }
            }
        }
        Ok(())
    }
}

/// `vals` as sqlx's arguments.
fn any_args<'a>(vals: &'a [Val<'_>]) -> Result<sqlx::any::AnyArguments<'a>, StoreError> {
    let mut args = sqlx::any::AnyArguments::default();
    for v in vals {
        match v {
            Val::Int(i) => arg(&mut args, *i)?,
            Val::Text(t) => arg(&mut args, t.as_deref())?,
            Val::Blob(b) => arg(&mut args, *b)?,
        }
    }
    Ok(args)
}

/// A pending request.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// Certname.
    pub certname: String,
    /// DER of the CSR.
    pub csr_der: Vec<u8>,
    /// Submission time.
    pub submitted_at: i64,
}

/// A certificate, with its revocation if any.
#[derive(Debug, Clone)]
pub struct CertRow {
    /// Serial.
    pub serial: u64,
    /// Certname.
    pub certname: String,
    /// DER.
    pub der: Vec<u8>,
    /// notBefore (Unix seconds).
    pub not_before: i64,
    /// notAfter (Unix seconds).
    pub not_after: i64,
    /// (revoked_at, reason code) when revoked.
    pub revoked: Option<(i64, i64)>,
}

/// A revocation.
#[derive(Debug, Clone)]
pub struct RevocationRow {
    /// Serial.
    pub serial: u64,
    /// When.
    pub revoked_at: i64,
    /// RFC 5280 reason code.
    pub reason: i64,
}

/// The current CRL.
#[derive(Debug, Clone)]
pub struct CrlRow {
    /// CRL number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: i64,
    /// nextUpdate.
    pub next_update: i64,
    /// DER.
    pub der: Vec<u8>,
    /// `Last-Modified` when served (Unix seconds): later than every earlier CRL's.
    pub last_modified: i64,
    /// The nextUpdate of the relying parties' CRL that goes with it (ours only; `None` for a CRL
    /// signed before there was one). That CRL is ours with this nextUpdate, signed where it is served
    /// (see `CrlSnapshot::relying`), so it is not stored.
    pub relying_next_update: Option<i64>,
    /// During a key rollover, the same CRL signed by the previous CA key.
    pub previous: Option<TwinPieces>,
}

/// A CRL that is one of ours signed with another key: `head`, then the entries of ours, then `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinPieces {
    /// The DER before the entries.
    pub head: Vec<u8>,
    /// The DER after the entries.
    pub tail: Vec<u8>,
}

/// Where a CRL's entries are in its DER, for storing it in pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlLayout {
    /// The revokedCertificates contents within the DER (an empty range where the CRL has none).
    pub entries: std::ops::Range<usize>,
    /// When the CRL appends to the stored one: that CRL's number and the length of its entries (the
    /// first bytes of these).
    pub appends_to: Option<(u64, usize)>,
}

/// What changed in the stored CRL since one a reader holds.
#[derive(Debug, Clone)]
pub enum CrlUpdate {
    /// Still the CRL the reader holds.
    Unchanged,
    /// A later CRL whose entries are the held CRL's followed by `added`: the row's DER is
    /// `head + held entries + added + tail` (`row.der` is empty).
    Appended {
        row: CrlRow,
        head: Vec<u8>,
        added: Vec<u8>,
        tail: Vec<u8>,
    },
    /// Another CRL, whole; `pieces` when it is stored in pieces (a later CRL may append to it).
    Whole { row: CrlRow, pieces: bool },
}

/// An audit row to write.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    /// When.
    pub at: i64,
    /// Who: `cli:<user>`, `cert:<cn>`, `autosign`, ...
    pub actor: &'a str,
    /// What: `submit`, `sign`, `revoke`, ...
    pub action: &'a str,
    /// On which certname.
    pub certname: Option<&'a str>,
    /// Which serial.
    pub serial: Option<u64>,
    /// `ok` or `refused`.
    pub outcome: &'a str,
    /// The message, for refusals.
    pub detail: Option<&'a str>,
}

impl<'a> AuditRecord<'a> {
    /// A successful action.
    pub fn ok(at: i64, actor: &'a str, action: &'a str) -> Self {
        AuditRecord {
            at,
            actor,
            action,
            certname: None,
            serial: None,
            outcome: "ok",
            detail: None,
        }
    }
    /// A refused action.
    pub fn refused(at: i64, actor: &'a str, action: &'a str) -> Self {
        AuditRecord {
            outcome: "refused",
            ..Self::ok(at, actor, action)
        }
    }
    /// On which certname.
    pub fn on(self, certname: &'a str) -> Self {
        AuditRecord {
            certname: Some(certname),
            ..self
        }
    }
    /// Which serial.
    pub fn serial(self, serial: u64) -> Self {
        AuditRecord {
            serial: Some(serial),
            ..self
        }
    }
    /// A detail (the refusal message, a reason).
    pub fn detail(self, detail: &'a str) -> Self {
        AuditRecord {
            detail: Some(detail),
            ..self
        }
    }
}

/// An audit row as stored.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Certname.
    pub certname: Option<String>,
    /// Serial.
    pub serial: Option<i64>,
    /// Outcome.
    pub outcome: String,
    /// Detail.
    pub detail: Option<String>,
    /// Chain hash.
    pub hash: String,
}

/// Which current certificates to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Signed and revoked.
    All,
    /// Not revoked.
    Signed,
    /// Revoked.
    Revoked,
}

impl StatusFilter {
    /// The condition (appended to a query over `certificates c LEFT JOIN revocations r`) that keeps
    /// the certificates this filter lists.
    fn condition(self) -> &'static str {
        match self {
            StatusFilter::All => "",
            StatusFilter::Signed => "AND r.serial IS NULL",
            StatusFilter::Revoked => "AND r.serial IS NOT NULL",
        }
    }
}

/// Keeps each certname's current certificate (its highest serial not cleaned), over `certificates c`.
const CURRENT: &str = "c.cleaned_at IS NULL AND c.serial = \
    (SELECT MAX(c2.serial) FROM certificates c2 WHERE c2.certname = c.certname AND c2.cleaned_at IS NULL)";

fn sha256(der: &[u8]) -> String {
    crate::ca::digest::fingerprint(crate::ca::digest::Digest::Sha256, der)
}

pub(super) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

pub(super) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt("serial beyond 2^63".into()))
}

/// `rows` tuples of `width` numbered parameters, from `$first` on: `($1, $2), ($3, $4)` for a
/// multi-row `VALUES` (both backends number parameters the same way).
fn tuples(rows: usize, width: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let params = (0..width)
                .map(|c| format!("${}", first + r * width + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({params})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, …` for `n` parameters, for an `IN (…)` list.
fn list(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` whose one `IN` list is `certnames` (written by [`list`]), bound.
fn with_names<'q>(
    sql: &'q str,
    certnames: &[&'q str],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    certnames.iter().fold(sqlx::query(sql), |q, n| q.bind(*n))
}

pub(super) async fn ca<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    let row = sqlx::query("SELECT chain_pem, key_id FROM ca WHERE id = 1")
        .fetch_optional(e)
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// The audit log's sealing key wrapped for the current CA key, once a key rollover switched.
pub(super) async fn audit_key_wrap<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar("SELECT audit_key_wrap FROM ca WHERE id = 1")
        .fetch_optional(e)
        .await?
        .flatten())
}

/// The next CA's chain (from `rollover start`) and the previous CA's (from `rollover switch`).
pub(super) async fn rollover_chains<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let row = sqlx::query("SELECT next_chain_pem, previous_chain_pem FROM ca WHERE id = 1")
        .fetch_optional(e)
        .await?;
    Ok(row.map_or((None, None), |r| (r.get(0), r.get(1))))
}

fn one_ca_row(done: sqlx::any::AnyQueryResult) -> Result<(), StoreError> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Corrupt("the database holds no CA".into()))
    }
}

/// The served chain changes: `created_at` (its `Last-Modified`) moves to `now`.
pub(super) async fn set_next_chain(
    c: &mut AnyConnection,
    chain: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    one_ca_row(
        sqlx::query("UPDATE ca SET next_chain_pem = $1, created_at = $2 WHERE id = 1")
            .bind(chain)
            .bind(now)
            .execute(&mut *c)
            .await?,
    )
}

pub(super) async fn switch_ca(
    c: &mut AnyConnection,
    key_id: &[u8],
    audit_key_wrap: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    one_ca_row(
        sqlx::query(
            "UPDATE ca SET previous_chain_pem = chain_pem, chain_pem = next_chain_pem, next_chain_pem = NULL, \
             key_id = $1, created_at = $2, audit_key_wrap = $3 WHERE id = 1 AND next_chain_pem IS NOT NULL",
        )
        .bind(key_id)
        .bind(now)
        .bind(audit_key_wrap)
        .execute(&mut *c)
        .await?,
    )
}

pub(super) async fn end_rollover(c: &mut AnyConnection, now: i64) -> Result<(), StoreError> {
    one_ca_row(
        sqlx::query("UPDATE ca SET previous_chain_pem = NULL, created_at = $1 WHERE id = 1")
            .bind(now)
            .execute(&mut *c)
            .await?,
    )
}

/// When the CA chain was stored (Unix seconds): the `certificate/ca` "file time".
pub(super) async fn ca_stored_at<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT created_at FROM ca WHERE id = 1")
        .fetch_optional(e)
        .await?)
}

/// The DER of a certname's current certificate and when it was issued.
pub(super) async fn current_certificate_issued<'e, E: Executor<'e, Database = Any>>(
    e: E,
    certname: &str,
) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
    let row = sqlx::query(
        "SELECT der, issued_at FROM certificates WHERE certname = $1 AND cleaned_at IS NULL \
         ORDER BY serial DESC LIMIT 1",
    )
    .bind(certname)
    .fetch_optional(e)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub(super) async fn replace_ca_chain(
    c: &mut AnyConnection,
    chain_pem: &str,
    now: i64,
) -> Result<(), StoreError> {
    let done = sqlx::query("UPDATE ca SET chain_pem = $1, created_at = $2 WHERE id = 1")
        .bind(chain_pem)
        .bind(now)
        .execute(&mut *c)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Corrupt("the database holds no CA".into()));
    }
    Ok(())
}

pub(super) async fn init_ca(
    c: &mut AnyConnection,
    chain_pem: &str,
    key_id: &[u8],
    first_serial: u64,
    now: i64,
) -> Result<(), StoreError> {
    let res = sqlx::query("INSERT INTO ca (id, chain_pem, key_id, created_at) VALUES (1, $1, $2, $3)")
        .bind(chain_pem)
        .bind(key_id)
        .bind(now)
        .execute(&mut *c)
        .await;
    if let Err(sqlx::Error::Database(d)) = &res {
        if d.is_unique_violation() {
            return Err(StoreError::Duplicate("a CA in this database".into()));
        }
    }
    res?;
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ('serial', $1), ('crl_number', -1), ('parent_crls', 0)",
    )
    .bind(to_i64(first_serial)?)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn counter<'e, E: Executor<'e, Database = Any>>(
    e: E,
    name: &str,
) -> Result<u64, StoreError> {
    let v: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = $1")
        .bind(name)
        .fetch_optional(e)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("counter {name} missing")))?;
    to_u64(v, name)
}

/// Increments a counter and returns its new value.
pub(super) async fn bump(c: &mut AnyConnection, name: &str) -> Result<i64, StoreError> {
    bump_by(c, name, 1).await
}

/// Advances a counter by `n` in one statement; its new value.
pub(super) async fn bump_by(c: &mut AnyConnection, name: &str, n: i64) -> Result<i64, StoreError> {
    let v: Option<i64> =
        sqlx::query_scalar("UPDATE counters SET value = value + $2 WHERE name = $1 RETURNING value")
            .bind(name)
            .bind(n)
            .fetch_optional(&mut *c)
            .await?;
    v.ok_or_else(|| StoreError::Corrupt(format!("counter {name} missing")))
}

/// PostgreSQL: advances a counter by `n` in one statement that is a transaction of its own, whose
/// commit does not wait for the disk (`synchronous_commit` off for that transaction alone); its new
/// value.
pub(super) async fn bump_by_unsynced<'e, E: Executor<'e, Database = Any>>(
    e: E,
    name: &str,
    n: i64,
) -> Result<i64, StoreError> {
    let v: Option<i64> = sqlx::query_scalar(
        "WITH unsynced AS (SELECT set_config('synchronous_commit', 'off', true)) \
         UPDATE counters SET value = value + $2 FROM unsynced WHERE name = $1 RETURNING value",
    )
    .bind(name)
    .bind(n)
    .fetch_optional(e)
    .await?;
    v.ok_or_else(|| StoreError::Corrupt(format!("counter {name} missing")))
}

pub(super) async fn request<'e, E: Executor<'e, Database = Any>>(
    e: E,
    certname: &str,
) -> Result<Option<RequestRow>, StoreError> {
    let row = sqlx::query("SELECT certname, csr_der, submitted_at FROM requests WHERE certname = $1")
        .bind(certname)
        .fetch_optional(e)
        .await?;
    Ok(row.map(|r| RequestRow {
        certname: r.get(0),
        csr_der: r.get(1),
        submitted_at: r.get(2),
    }))
}

/// The pending requests of `certnames`, by name, in one statement.
pub(super) async fn requests_named<'e, E: Executor<'e, Database = Any>>(
    e: E,
    certnames: &[&str],
) -> Result<std::collections::HashMap<String, RequestRow>, StoreError> {
    if certnames.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let sql = format!(
        "SELECT certname, csr_der, submitted_at FROM requests WHERE certname IN ({})",
        list(certnames.len(), 1)
    );
    Ok(with_names(&sql, certnames)
        .fetch_all(e)
        .await?
        .into_iter()
        .map(|r| {
            let row = RequestRow {
                certname: r.get(0),
                csr_der: r.get(1),
                submitted_at: r.get(2),
            };
            (row.certname.clone(), row)
        })
        .collect())
}

pub(super) async fn requests<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Vec<RequestRow>, StoreError> {
    let rows = sqlx::query("SELECT certname, csr_der, submitted_at FROM requests ORDER BY certname")
        .fetch_all(e)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| RequestRow {
            certname: r.get(0),
            csr_der: r.get(1),
            submitted_at: r.get(2),
        })
        .collect())
}

/// A pending request to store (see [`put_requests`]).
pub struct NewRequest<'a> {
    /// Certname.
    pub certname: &'a str,
    /// The CSR.
    pub csr_der: &'a [u8],
    /// Its status object.
    pub status_json: &'a str,
    /// Who submitted it.
    pub by: &'a str,
}

/// How a stored request is replaced by a new one for its name.
const REPLACE_REQUEST: &str = " ON CONFLICT (certname) DO UPDATE SET csr_der = excluded.csr_der, \
     fingerprint = excluded.fingerprint, status_json = excluded.status_json, \
     submitted_at = excluded.submitted_at, submitted_by = excluded.submitted_by";

/// The error text of a request refused because its name has one already.
fn duplicate_request(names: &[&str]) -> String {
    match names {
        [one] => format!("a certificate request for {one}"),
        _ => "a certificate request for one of these names".into(),
    }
}

/// Stores pending requests in one statement, replacing any stored for the same names when `replace`
/// (a name may appear once).
pub(super) async fn put_requests(
    c: &mut AnyConnection,
    backend: super::Backend,
    rows: &[NewRequest<'_>],
    now: i64,
    replace: bool,
) -> Result<(), StoreError> {
    let mut w = Writes::default();
    w.requests(rows, now, replace);
    w.run(Conn::Sqlx(c), backend).await.map(|_| ())
}

/// Removes the pending requests of `certnames` in one statement; how many there were.
pub(super) async fn delete_requests(c: &mut AnyConnection, certnames: &[&str]) -> Result<u64, StoreError> {
    if certnames.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM requests WHERE certname IN ({})",
        list(certnames.len(), 1)
    );
    Ok(with_names(&sql, certnames)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

const CERT_COLUMNS: &str = "c.serial, c.certname, c.der, c.not_before, c.not_after, r.revoked_at, r.reason";

fn cert_row(r: &dyn Cells) -> Result<CertRow, StoreError> {
    let revoked_at = r.int(5)?;
    let reason = r.int(6)?;
    Ok(CertRow {
        serial: to_u64(present(r.int(0)?, "a certificate's serial")?, "serial")?,
        certname: present(r.text(1)?, "a certificate's certname")?,
        der: present(r.blob(2)?, "a certificate")?,
        not_before: present(r.int(3)?, "a certificate's start")?,
        not_after: present(r.int(4)?, "a certificate's end")?,
        revoked: revoked_at.map(|at| (at, reason.unwrap_or(0))),
    })
}

pub(super) async fn current_certificate<'e, E: Executor<'e, Database = Any>>(
    e: E,
    certname: &str,
) -> Result<Option<CertRow>, StoreError> {
    let row = sqlx::query(&current_certificate_sql())
        .bind(certname)
        .fetch_optional(e)
        .await?;
    row.as_ref().map(|r| cert_row(r)).transpose()
}

/// [`current_certificate`], in a batched writer's transaction.
pub(super) async fn current_certificate_in(
    mut c: Conn<'_>,
    certname: &str,
) -> Result<Option<CertRow>, StoreError> {
    let mut row = None;
    c.rows(&current_certificate_sql(), &[Val::text(certname)], |r| {
        row = Some(cert_row(r)?);
        Ok(())
    })
    .await?;
    Ok(row)
}

fn current_certificate_sql() -> String {
    format!(
        "SELECT {CERT_COLUMNS} FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial \
         WHERE c.certname = $1 AND c.cleaned_at IS NULL ORDER BY c.serial DESC LIMIT 1"
    )
}

/// What each of `certnames` holds, in one statement: its current certificate (`signed` or
/// `revoked`), else a pending request (`requested`); names holding nothing are left out.
pub(super) async fn name_states<'e, E: Executor<'e, Database = Any>>(
    e: E,
    certnames: &[&str],
) -> Result<std::collections::HashMap<String, &'static str>, StoreError> {
    let mut out = std::collections::HashMap::new();
    if certnames.is_empty() {
        return Ok(out);
    }
    let list = list(certnames.len(), 1);
    let sql = format!(
        "SELECT c.certname, CASE WHEN r.serial IS NULL THEN 1 ELSE 2 END FROM certificates c \
         LEFT JOIN revocations r ON r.serial = c.serial \
         WHERE c.certname IN ({list}) AND {CURRENT} \
         UNION ALL SELECT certname, 3 FROM requests WHERE certname IN ({list})"
    );
    let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
    for n in certnames {
        q = q.bind(*n);
    }
    for (name, state) in q.fetch_all(e).await? {
        name_state(&mut out, name, state);
    }
    Ok(out)
}

pub(super) async fn certificates<'e, E: Executor<'e, Database = Any>>(
    e: E,
    filter: StatusFilter,
) -> Result<Vec<CertRow>, StoreError> {
    let state = filter.condition();
    let sql = format!(
        "SELECT {CERT_COLUMNS} FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial \
         WHERE {CURRENT} \
         {state} ORDER BY c.certname"
    );
    let rows = sqlx::query(&sql).fetch_all(e).await?;
    rows.iter().map(|r| cert_row(r)).collect()
}

/// An issued certificate to store (see [`insert_certificates`]).
pub struct NewCertificate<'a> {
    /// The certificate.
    pub row: &'a CertRow,
    /// Its status object.
    pub status_json: &'a str,
    /// Who had it signed.
    pub by: &'a str,
}

/// Stores issued certificates in one statement.
pub(super) async fn insert_certificates(
    c: &mut AnyConnection,
    backend: super::Backend,
    certs: &[NewCertificate<'_>],
    issued_at: i64,
) -> Result<(), StoreError> {
    let mut w = Writes::default();
    w.certificates(certs, issued_at)?;
    w.run(Conn::Sqlx(c), backend).await?;
    Ok(())
}

/// The longest certname `listed` holds (0 when none).
pub(super) async fn longest_listed_name<'e, E: Executor<'e, Database = Any>>(
    e: E,
    listed: Listed,
) -> Result<usize, StoreError> {
    let sql = match listed {
        Listed::Requests => "SELECT MAX(LENGTH(certname)) FROM requests".to_string(),
        Listed::Certificates(filter) => {
            let state = filter.condition();
            format!(
                "SELECT MAX(LENGTH(c.certname)) FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial \
                 WHERE {CURRENT} \
                 {state}"
            )
        }
    };
    let n: Option<i64> = sqlx::query_scalar(&sql).fetch_one(e).await?;
    Ok(n.and_then(|n| usize::try_from(n).ok()).unwrap_or(0))
}

/// What a page of the status listing holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Listed {
    /// Pending requests.
    Requests,
    /// Current certificates.
    Certificates(StatusFilter),
}

/// One page of the status listing, in certname order after `after`: the status objects of up to
/// `limit` names joined with commas (aggregated by the database, not row by row), and the last
/// name; `None` after the last page. Revoked certificates' objects get `revoked_state` in place of
/// `signed_state`.
pub(super) async fn status_list_page(
    c: &mut AnyConnection,
    backend: super::Backend,
    listed: Listed,
    after: &str,
    limit: i64,
    signed_state: &str,
    revoked_state: &str,
) -> Result<Option<(String, String)>, StoreError> {
    // An ordered subquery feeds the aggregate in its order (SQLite does not flatten it), which costs
    // no sort, unlike an ORDER BY inside group_concat.
    let agg = match backend {
        super::Backend::Sqlite => "group_concat(j, ',')",
        super::Backend::Postgres => "string_agg(j, ',' ORDER BY certname)",
    };
    let inner = match listed {
        Listed::Requests => {
            "SELECT certname, status_json AS j FROM requests WHERE certname > $1 ORDER BY certname LIMIT $2"
                .to_string()
        }
        Listed::Certificates(filter) => {
            let state = filter.condition();
            format!(
                "SELECT c.certname AS certname, CASE WHEN r.serial IS NULL THEN c.status_json \
                           ELSE replace(c.status_json, $1, $2) END AS j \
                 FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial \
                 WHERE c.certname > $3 AND {CURRENT} \
                 {state} ORDER BY c.certname LIMIT $4"
            )
        }
    };
    let sql = format!("SELECT {agg}, MAX(certname) FROM ({inner}) AS listed");
    let mut q = sqlx::query_as::<_, (Option<String>, Option<String>)>(&sql);
    if let Listed::Certificates(_) = listed {
        q = q.bind(signed_state).bind(revoked_state);
    }
    let row = q.bind(after).bind(limit).fetch_one(&mut *c).await?;
    Ok(match row {
        (Some(json), Some(last)) => Some((json, last)),
        _ => None,
    })
}

pub(super) async fn revocable_serials(
    c: &mut AnyConnection,
    certname: &str,
    now: i64,
) -> Result<Vec<u64>, StoreError> {
    let v: Vec<i64> = sqlx::query_scalar(
        "SELECT c.serial FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial \
         WHERE c.certname = $1 AND c.cleaned_at IS NULL AND r.serial IS NULL AND c.not_after > $2 ORDER BY c.serial",
    )
    .bind(certname)
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    v.into_iter().map(|s| to_u64(s, "serial")).collect()
}

pub(super) async fn revoke(
    c: &mut AnyConnection,
    serial: u64,
    certname: Option<&str>,
    at: i64,
    reason: i64,
) -> Result<bool, StoreError> {
    let res = sqlx::query(
        "INSERT INTO revocations (serial, certname, revoked_at, reason) VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO NOTHING",
    )
    .bind(to_i64(serial)?)
    .bind(certname)
    .bind(at)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    Ok(res.rows_affected() > 0)
}

pub(super) async fn clean_certificates(
    c: &mut AnyConnection,
    certname: &str,
    at: i64,
) -> Result<u64, StoreError> {
    let res =
        sqlx::query("UPDATE certificates SET cleaned_at = $1 WHERE certname = $2 AND cleaned_at IS NULL")
            .bind(at)
            .bind(certname)
            .execute(&mut *c)
            .await?;
    Ok(res.rows_affected())
}

pub(super) async fn revocations(c: &mut AnyConnection) -> Result<Vec<RevocationRow>, StoreError> {
    revocation_rows(
        c,
        "SELECT serial, revoked_at, reason FROM revocations ORDER BY serial",
    )
    .await
}

/// The rows of a query selecting (serial, revoked_at, reason).
async fn revocation_rows(c: &mut AnyConnection, sql: &str) -> Result<Vec<RevocationRow>, StoreError> {
    let rows = sqlx::query(sql).fetch_all(&mut *c).await?;
    rows.iter()
        .map(|r| {
            Ok(RevocationRow {
                serial: to_u64(r.get(0), "serial")?,
                revoked_at: r.get(1),
                reason: r.get(2),
            })
        })
        .collect()
}

pub(super) async fn expired_revocations(c: &mut AnyConnection, now: i64) -> Result<Vec<u64>, StoreError> {
    let v: Vec<i64> = sqlx::query_scalar(
        "SELECT r.serial FROM revocations r JOIN certificates c ON c.serial = r.serial \
         WHERE c.not_after < $1 ORDER BY r.serial",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    v.into_iter().map(|s| to_u64(s, "serial")).collect()
}

pub(super) async fn delete_revocation(c: &mut AnyConnection, serial: u64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM revocations WHERE serial = $1")
        .bind(to_i64(serial)?)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(super) async fn parent_crls<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT der FROM parent_crls ORDER BY position")
            .fetch_all(e)
            .await?,
    )
}

pub(super) async fn set_parent_crl(
    c: &mut AnyConnection,
    position: u32,
    der: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO parent_crls (position, der) VALUES ($1, $2) ON CONFLICT (position) DO UPDATE SET der = excluded.der",
    )
    .bind(i64::from(position))
    .bind(der)
    .execute(&mut *c)
    .await?;
    // Readers notice a new parent CRL by the counter (see crl_version).
    other_crls_changed(c).await
}

/// Readers reload the served chain (parents' and infrastructure CRLs) when this counter moves, and
/// serve it with a `Last-Modified` later than any served so far.
async fn other_crls_changed(c: &mut AnyConnection) -> Result<(), StoreError> {
    bump(c, "parent_crls").await?;
    let lm = next_crl_last_modified(c, 0).await?;
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ('parent_crls_last_modified', $1) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(lm)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn infra_nodes<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT certname FROM infra_nodes ORDER BY certname")
            .fetch_all(e)
            .await?,
    )
}

/// Adds (`add`) or removes an infrastructure node; whether anything changed.
pub(super) async fn set_infra_node(
    c: &mut AnyConnection,
    certname: &str,
    add: bool,
) -> Result<bool, StoreError> {
    let sql = if add {
        "INSERT INTO infra_nodes (certname) VALUES ($1) ON CONFLICT (certname) DO NOTHING"
    } else {
        "DELETE FROM infra_nodes WHERE certname = $1"
    };
    let n = sqlx::query(sql)
        .bind(certname)
        .execute(&mut *c)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// What makes a serial an infrastructure node's: its certificate's certname (or, for a revocation
/// imported without the certificate, the revocation's) is listed.
const INFRA_SERIAL: &str = "COALESCE(c.certname, r.certname) IN (SELECT certname FROM infra_nodes)";

/// The revocations of infrastructure nodes' certificates, by serial.
pub(super) async fn infra_revocations(c: &mut AnyConnection) -> Result<Vec<RevocationRow>, StoreError> {
    let sql = format!(
        "SELECT r.serial, r.revoked_at, r.reason FROM revocations r \
         LEFT JOIN certificates c ON c.serial = r.serial WHERE {INFRA_SERIAL} ORDER BY r.serial"
    );
    revocation_rows(c, &sql).await
}

/// Whether any of `serials` is an infrastructure node's.
pub(super) async fn any_infra_serial(c: &mut AnyConnection, serials: &[u64]) -> Result<bool, StoreError> {
    for &serial in serials {
        let sql = format!(
            "SELECT COUNT(*) FROM revocations r LEFT JOIN certificates c ON c.serial = r.serial \
             WHERE r.serial = $1 AND {INFRA_SERIAL}"
        );
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(to_i64(serial)?)
            .fetch_one(&mut *c)
            .await?;
        if n > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The serials of the infrastructure nodes' current certificates (puppetserver's `infra_serials`).
pub(super) async fn infra_serials<'e, E: Executor<'e, Database = Any>>(e: E) -> Result<Vec<u64>, StoreError> {
    let v: Vec<i64> = sqlx::query_scalar(
        "SELECT MAX(serial) FROM certificates WHERE cleaned_at IS NULL \
         AND certname IN (SELECT certname FROM infra_nodes) GROUP BY certname ORDER BY 1",
    )
    .fetch_all(e)
    .await?;
    v.into_iter().map(|s| to_u64(s, "serial")).collect()
}

pub(super) async fn infra_crl<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Option<CrlRow>, StoreError> {
    let row = sqlx::query("SELECT number, this_update, next_update, der FROM infra_crl WHERE id = 1")
        .fetch_optional(e)
        .await?;
    row.map(|r| {
        Ok(CrlRow {
            number: to_u64(r.get(0), "infra crl number")?,
            this_update: r.get(1),
            next_update: r.get(2),
            der: r.get(3),
            last_modified: 0,
            relying_next_update: None,
            previous: None,
        })
    })
    .transpose()
}

pub(super) async fn store_infra_crl(c: &mut AnyConnection, row: &CrlRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO infra_crl (id, number, this_update, next_update, der) VALUES (1, $1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET number = excluded.number, this_update = excluded.this_update, \
         next_update = excluded.next_update, der = excluded.der",
    )
    .bind(to_i64(row.number)?)
    .bind(row.this_update)
    .bind(row.next_update)
    .bind(&row.der)
    .execute(&mut *c)
    .await?;
    other_crls_changed(c).await
}

pub(super) async fn set_counter(c: &mut AnyConnection, name: &str, value: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE counters SET value = $1 WHERE name = $2")
        .bind(value)
        .bind(name)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(super) async fn all_certificates<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Vec<(CertRow, bool)>, StoreError> {
    let sql = format!(
        "SELECT {CERT_COLUMNS}, CASE WHEN c.cleaned_at IS NULL THEN 0 ELSE 1 END FROM certificates c \
         LEFT JOIN revocations r ON r.serial = c.serial ORDER BY c.serial"
    );
    let rows = sqlx::query(&sql).fetch_all(e).await?;
    rows.iter()
        .map(|r| Ok((cert_row(r)?, r.get::<i64, _>(7) != 0)))
        .collect()
}

pub(super) async fn insert_inventory_line(
    c: &mut AnyConnection,
    serial: u64,
    line: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO imported_inventory (serial, line) VALUES ($1, $2) ON CONFLICT (serial) DO NOTHING",
    )
    .bind(to_i64(serial)?)
    .bind(line)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn inventory_lines<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<Vec<(u64, String)>, StoreError> {
    let rows = sqlx::query("SELECT serial, line FROM imported_inventory ORDER BY serial")
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| Ok((to_u64(r.get(0), "serial")?, r.get(1))))
        .collect()
}

pub(super) async fn certificate_exists(c: &mut AnyConnection, serial: u64) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates WHERE serial = $1")
        .bind(to_i64(serial)?)
        .fetch_one(&mut *c)
        .await?;
    Ok(n > 0)
}

/// Who a serial was issued to: the certname of a stored certificate, else the line of an imported
/// inventory (`None`, `None` when neither holds it).
pub(super) async fn serial_owner(
    c: &mut AnyConnection,
    serial: u64,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let serial = to_i64(serial)?;
    let certname: Option<String> = sqlx::query_scalar("SELECT certname FROM certificates WHERE serial = $1")
        .bind(serial)
        .fetch_optional(&mut *c)
        .await?;
    if certname.is_some() {
        return Ok((certname, None));
    }
    let line: Option<String> = sqlx::query_scalar("SELECT line FROM imported_inventory WHERE serial = $1")
        .bind(serial)
        .fetch_optional(&mut *c)
        .await?;
    Ok((None, line))
}

/// What the database knows of a serial for OCSP: whether this CA issued it (a certificate or an
/// imported inventory line) and its revocation (time, reason), if any.
pub(super) async fn serial_status<'e, E: Executor<'e, Database = Any>>(
    e: E,
    serial: u64,
) -> Result<(bool, Option<(i64, i64)>), StoreError> {
    let r = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM certificates WHERE serial = $1) + \
                (SELECT COUNT(*) FROM imported_inventory WHERE serial = $1), \
                (SELECT revoked_at FROM revocations WHERE serial = $1), \
                (SELECT reason FROM revocations WHERE serial = $1)",
    )
    .bind(to_i64(serial)?)
    .fetch_one(e)
    .await?;
    let issued: i64 = r.get(0);
    let revoked = match (r.get::<Option<i64>, _>(1), r.get::<Option<i64>, _>(2)) {
        (Some(at), Some(reason)) => Some((at, reason)),
        _ => None,
    };
    Ok((issued > 0, revoked))
}

pub(super) async fn is_revoked(c: &mut AnyConnection, serial: u64) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revocations WHERE serial = $1")
        .bind(to_i64(serial)?)
        .fetch_one(&mut *c)
        .await?;
    Ok(n > 0)
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub pending: i64,
    pub certificates: i64,
    pub expiring_30d: i64,
    /// Current, unrevoked certificates expiring within the warning window.
    pub expiring: i64,
    /// Current, unrevoked certificates already expired (not cleaned).
    pub expired: i64,
    pub revoked: i64,
    pub crl_number: i64,
    pub crl_this_update: i64,
    pub crl_next_update: i64,
    pub relying_crl_next_update: Option<i64>,
}

/// The condition on `certificates c` for certificates that are their name's current one (the highest
/// serial not cleaned), not revoked and not named by the parameter `except` (`$n`: certificates the
/// server renews itself).
fn current_unrevoked(except: &str) -> String {
    format!(
        "c.cleaned_at IS NULL AND c.certname <> {except} \
         AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.serial = c.serial) \
         AND c.serial = (SELECT MAX(d.serial) FROM certificates d WHERE d.certname = c.certname AND d.cleaned_at IS NULL)"
    )
}

pub(super) async fn metrics<'e, E: Executor<'e, Database = Any>>(
    e: E,
    now: i64,
    window: i64,
    except: &str,
) -> Result<MetricsSnapshot, StoreError> {
    let current = current_unrevoked("$3");
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM requests), \
                (SELECT COUNT(*) FROM certificates WHERE cleaned_at IS NULL), \
                (SELECT COUNT(*) FROM certificates WHERE cleaned_at IS NULL AND not_after > $1 AND not_after <= $1 + 2592000 AND certname <> $3), \
                (SELECT COUNT(*) FROM certificates c WHERE c.not_after > $1 AND c.not_after <= $2 AND {current}), \
                (SELECT COUNT(*) FROM certificates c WHERE c.not_after <= $1 AND {current}), \
                (SELECT COUNT(*) FROM revocations), \
                (SELECT value FROM counters WHERE name = 'crl_number'), (SELECT this_update FROM crl WHERE id = 1), \
                (SELECT next_update FROM crl WHERE id = 1), (SELECT relying_next_update FROM crl WHERE id = 1)"
    );
    let r = sqlx::query(&sql)
        .bind(now)
        .bind(now.saturating_add(window))
        .bind(except)
        .fetch_one(e)
        .await?;
    Ok(MetricsSnapshot {
        pending: r.get(0),
        certificates: r.get(1),
        expiring_30d: r.get(2),
        expiring: r.get(3),
        expired: r.get(4),
        revoked: r.get(5),
        crl_number: r.get::<Option<i64>, _>(6).unwrap_or(0),
        crl_this_update: r.get::<Option<i64>, _>(7).unwrap_or(0),
        crl_next_update: r.get::<Option<i64>, _>(8).unwrap_or(0),
        relying_crl_next_update: r.get(9),
    })
}

/// A current, unrevoked certificate and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringRow {
    /// Certname.
    pub certname: String,
    /// Serial.
    pub serial: u64,
    /// notAfter (Unix seconds).
    pub not_after: i64,
}

/// Current, unrevoked certificates whose notAfter is at or before `until`, soonest first, except
/// those named `except`.
pub(super) async fn expiring<'e, E: Executor<'e, Database = Any>>(
    e: E,
    until: i64,
    except: &str,
) -> Result<Vec<ExpiringRow>, StoreError> {
    let sql = format!(
        "SELECT c.certname, c.serial, c.not_after FROM certificates c \
         WHERE c.not_after <= $1 AND {} ORDER BY c.not_after, c.certname",
        current_unrevoked("$2")
    );
    let rows = sqlx::query(&sql).bind(until).bind(except).fetch_all(e).await?;
    rows.into_iter()
        .map(|r| {
            Ok(ExpiringRow {
                certname: r.get(0),
                serial: to_u64(r.get(1), "serial")?,
                not_after: r.get(2),
            })
        })
        .collect()
}

/// The stored CRL's row: the DER itself (rows from before segments) or its head and tail.
pub(super) struct CrlMeta {
    pub row: CrlRow,
    /// head, tail, entries_from: `None` for a row that keeps its whole DER.
    pub pieces: Option<(Vec<u8>, Vec<u8>, i64)>,
}

pub(super) async fn crl_meta(c: &mut AnyConnection) -> Result<Option<CrlMeta>, StoreError> {
    let row = sqlx::query(
        "SELECT number, this_update, next_update, der, last_modified, head, tail, entries_from, \
         relying_next_update, previous_head, previous_tail FROM crl WHERE id = 1",
    )
    .fetch_optional(&mut *c)
    .await?;
    row.map(|r| {
        let head: Option<Vec<u8>> = r.get(5);
        let tail: Option<Vec<u8>> = r.get(6);
        let from: Option<i64> = r.get(7);
        let previous = match (r.get(9), r.get(10)) {
            (Some(head), Some(tail)) => Some(TwinPieces { head, tail }),
            _ => None,
        };
        Ok(CrlMeta {
            row: CrlRow {
                number: to_u64(r.get(0), "crl number")?,
                this_update: r.get(1),
                next_update: r.get(2),
                der: r.get(3),
                last_modified: r.get(4),
                relying_next_update: r.get(8),
                previous,
            },
            pieces: match (head, tail, from) {
                (Some(h), Some(t), Some(f)) => Some((h, t, f)),
                _ => None,
            },
        })
    })
    .transpose()
}

/// The entries of the CRL segments numbered `from..=to`, concatenated in order.
/// The entries of CRLs `from` to `to`, segment by segment, in order.
pub(super) async fn crl_segments(
    c: &mut AnyConnection,
    from: i64,
    to: i64,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT entries FROM crl_segments WHERE number >= $1 AND number <= $2 ORDER BY number",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *c)
    .await?)
}

pub(super) async fn crl_version<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<(Option<i64>, i64), StoreError> {
    let row = sqlx::query(
        "SELECT (SELECT value FROM counters WHERE name = 'crl_number'), \
                (SELECT value FROM counters WHERE name = 'parent_crls')",
    )
    .fetch_one(e)
    .await?;
    Ok((row.get(0), row.get::<Option<i64>, _>(1).unwrap_or(0)))
}

pub(super) async fn crl_number<'e, E: Executor<'e, Database = Any>>(e: E) -> Result<Option<u64>, StoreError> {
    // The counter: the number of the last CRL signed (-1 before the first), stored in the same
    // transaction as the CRL (a database written by an older version may hold an older CRL: the
    // revocation state's owner then signs a new one).
    let n: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'crl_number'")
        .fetch_optional(e)
        .await?;
    n.filter(|n| *n >= 0).map(|n| to_u64(n, "crl number")).transpose()
}

/// Stores a CRL in pieces (see migration 0004): a CRL that appends to the stored one adds a segment
/// with its new entries; any other replaces every segment with one holding all its entries. A CRL
/// never replaces a newer one, and an append whose base is not the stored CRL is refused (it would
/// rebuild to something other than what was signed).
pub(super) async fn store_crl(
    c: &mut AnyConnection,
    row: &CrlRow,
    layout: &CrlLayout,
) -> Result<(), StoreError> {
    let bad = || StoreError::Corrupt("the CRL's layout does not match its DER".into());
    let der = &row.der;
    let entries = der.get(layout.entries.clone()).ok_or_else(bad)?;
    let head = &der[..layout.entries.start];
    let tail = &der[layout.entries.end..];
    let number = to_i64(row.number)?;
    let twin = row.previous.as_ref();
    // `relying_head` and `relying_tail` (migration 0006) are no longer written: the relying parties'
    // CRL is signed where it is served, from this row and its `relying_next_update`.
    match layout.appends_to {
        Some((previous, previous_len)) => {
            let added = entries.get(previous_len..).ok_or_else(bad)?;
            let updated = sqlx::query(
                "UPDATE crl SET number = $1, this_update = $2, next_update = $3, head = $4, tail = $5, \
                 last_modified = $6, relying_next_update = $8, relying_head = NULL, relying_tail = NULL, \
                 previous_head = $9, previous_tail = $10 WHERE id = 1 AND number = $7 AND head IS NOT NULL",
            )
            .bind(number)
            .bind(row.this_update)
            .bind(row.next_update)
            .bind(head)
            .bind(tail)
            .bind(row.last_modified)
            .bind(to_i64(previous)?)
            .bind(row.relying_next_update)
            .bind(twin.map(|p| p.head.as_slice()))
            .bind(twin.map(|p| p.tail.as_slice()))
            .execute(&mut *c)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Corrupt(format!(
                    "CRL {} appends to CRL {previous}, which is not the one stored",
                    row.number
                )));
            }
            sqlx::query("INSERT INTO crl_segments (number, entries) VALUES ($1, $2)")
                .bind(number)
                .bind(added)
                .execute(&mut *c)
                .await?;
        }
        None => {
            let stored = sqlx::query(
                "INSERT INTO crl (id, number, this_update, next_update, der, last_modified, head, tail, entries_from, \
                 relying_next_update, relying_head, relying_tail, previous_head, previous_tail) \
                 VALUES (1, $1, $2, $3, $4, $5, $6, $7, $1, $8, NULL, NULL, $9, $10) \
                 ON CONFLICT (id) DO UPDATE SET number = excluded.number, this_update = excluded.this_update, \
                 next_update = excluded.next_update, der = excluded.der, last_modified = excluded.last_modified, \
                 head = excluded.head, tail = excluded.tail, entries_from = excluded.entries_from, \
                 relying_next_update = excluded.relying_next_update, relying_head = excluded.relying_head, \
                 relying_tail = excluded.relying_tail, previous_head = excluded.previous_head, \
                 previous_tail = excluded.previous_tail \
                 WHERE excluded.number > crl.number",
            )
            .bind(number)
            .bind(row.this_update)
            .bind(row.next_update)
            .bind(Vec::<u8>::new())
            .bind(row.last_modified)
            .bind(head)
            .bind(tail)
            .bind(row.relying_next_update)
            .bind(twin.map(|p| p.head.as_slice()))
            .bind(twin.map(|p| p.tail.as_slice()))
            .execute(&mut *c)
            .await?;
            if stored.rows_affected() == 1 {
                sqlx::query("DELETE FROM crl_segments").execute(&mut *c).await?;
                sqlx::query("INSERT INTO crl_segments (number, entries) VALUES ($1, $2)")
                    .bind(number)
                    .bind(entries)
                    .execute(&mut *c)
                    .await?;
            }
        }
    }
    Ok(())
}

/// The chain hash of an audit row: SHA-256 over the previous hash and every field, unit-separated.
pub fn audit_hash(prev: &str, f: &AuditRecord<'_>) -> String {
    let none = "\u{0}".to_string();
    let fields = [
        prev.to_string(),
        f.at.to_string(),
        f.actor.to_string(),
        f.action.to_string(),
        f.certname.map_or_else(|| none.clone(), str::to_string),
        f.serial.map_or_else(|| none.clone(), |s| s.to_string()),
        f.outcome.to_string(),
        f.detail.map_or_else(|| none.clone(), str::to_string),
    ];
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, fields.join("\u{1f}").as_bytes());
    crate::ca::digest::hex(d.as_ref())
}

/// Appends audit rows in order, sealed when `seal` is given. Returns the last one's id and chain
/// hash. `prev` is the last row (id, hash) when the caller knows it (it appended it in this
/// transaction); else it is read. `ids`: ids drawn ahead for PostgreSQL (see [`audit_inserts`]).
pub(super) async fn audit(
    c: &mut AnyConnection,
    backend: super::Backend,
    recs: &[AuditRecord<'_>],
    seal: Option<&super::AuditSeal>,
    prev: Option<(i64, String)>,
    ids: &mut std::collections::VecDeque<i64>,
) -> Result<Option<(i64, String)>, StoreError> {
    if recs.is_empty() {
        return Ok(prev);
    }
    let (rows, last) = audit_inserts(Conn::Sqlx(&mut *c), backend, recs, seal, prev, ids).await?;
    let mut w = Writes::default();
    w.audit(&rows);
    w.run(Conn::Sqlx(c), backend).await?;
    Ok(last)
}

/// An audit row ready to insert: its record, id, chain hash and seal.
pub(super) struct AuditInsert<'a> {
    rec: &'a AuditRecord<'a>,
    id: i64,
    serial: Option<i64>,
    hash: String,
    mac: Option<String>,
}

/// The rows that append `recs` to the audit log, chained after `prev` (read when not given), and the
/// last one's (id, hash). Ids: on SQLite they follow the last row's (the write lock is held, and
/// `AUTOINCREMENT` accepts explicit ids and never goes back); on PostgreSQL the identity column's
/// sequence gives each (a server of another version may insert through it at the same time), taken
/// from `ids` (drawn ahead, see [`requests_and_audit_ends`]) and drawn in one statement when too few.
/// Ids only grow from one transaction to the next: writers hold the CA's write lock.
pub(super) async fn audit_inserts<'a>(
    mut c: Conn<'_>,
    backend: super::Backend,
    recs: &'a [AuditRecord<'a>],
    seal: Option<&super::AuditSeal>,
    prev: Option<(i64, String)>,
    ids: &mut std::collections::VecDeque<i64>,
) -> Result<(Vec<AuditInsert<'a>>, Option<(i64, String)>), StoreError> {
    // Inside the write transaction, so the chain has no forks.
    let mut last = prev;
    if last.is_none() {
        c.rows("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", &[], |r| {
            last = Some((
                present(r.int(0)?, "an audit id")?,
                present(r.text(1)?, "an audit hash")?,
            ));
            Ok(())
        })
        .await?;
    }
    if backend == super::Backend::Sqlite {
        let first = last.as_ref().map_or(1, |(id, _)| id + 1);
        ids.clear();
        ids.extend((first..).take(recs.len()));
    } else if ids.len() < recs.len() {
        let mut more: Vec<i64> = Vec::new();
        c.rows(
            "SELECT nextval(pg_get_serial_sequence('audit', 'id')) FROM generate_series(1, $1)",
            &[Val::Int(Some(to_i64((recs.len() - ids.len()) as u64)?))],
            |r| {
                more.push(present(r.int(0)?, "an audit id")?);
                Ok(())
            },
        )
        .await?;
        more.sort_unstable();
        ids.extend(more);
    }
    let mut rows = Vec::with_capacity(recs.len());
    for rec in recs {
        let serial = rec.serial.map(to_i64).transpose()?;
        let hash = audit_hash(last.as_ref().map_or("", |(_, h)| h.as_str()), rec);
        let id = ids
            .pop_front()
            .ok_or_else(|| StoreError::Corrupt("the audit id sequence gave too few ids".into()))?;
        let mac = seal.map(|s| s.row_mac(id, &hash));
        rows.push(AuditInsert {
            rec,
            id,
            serial,
            hash: hash.clone(),
            mac,
        });
        last = Some((id, hash));
    }
    Ok((rows, last))
}

/// Adds a statement argument.
fn arg<'q, T>(args: &mut sqlx::any::AnyArguments<'q>, v: T) -> Result<(), StoreError>
where
    T: 'q + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
{
    use sqlx::Arguments;
    args.add(v)
        .map_err(|e| StoreError::Corrupt(format!("a value could not be encoded: {e}")))
}

/// A signing round's writes sent as one round trip: the certificates stored, the pending requests
/// they took, the audit rows and the serials reserved. On SQLite the statements go as one batch to
/// the connection's thread; on PostgreSQL (where a prepared statement is one statement) as one
/// statement, the others in data-modifying `WITH` clauses, which PostgreSQL runs to completion
/// whatever reads them (none of them reads what another writes).
#[derive(Default)]
pub(super) struct Writes<'q> {
    statements: Vec<String>,
    /// The statement that reserves serials, if any: last, its `RETURNING` the one row answered.
    reserve: Option<String>,
    /// `$N` is `args[N - 1]`, numbered across the statements.
    args: Vec<Val<'q>>,
    /// The serials of the stored certificates, for the error on a duplicate.
    serials: Vec<u64>,
    /// The names of the requests stored, for the error on a duplicate.
    requests: Vec<&'q str>,
}

impl<'q> Writes<'q> {
    fn bind(&mut self, v: impl Into<Val<'q>>) {
        self.args.push(v.into());
    }

    /// Stores issued certificates.
    pub(super) fn certificates(
        &mut self,
        certs: &[NewCertificate<'q>],
        issued_at: i64,
    ) -> Result<(), StoreError> {
        if certs.is_empty() {
            return Ok(());
        }
        self.statements.push(format!(
            "INSERT INTO certificates (serial, certname, der, fingerprint, status_json, not_before, not_after, issued_at, issued_by) \
             VALUES {}",
            tuples(certs.len(), 9, self.args.len() + 1)
        ));
        for n in certs {
            self.serials.push(n.row.serial);
            self.bind(to_i64(n.row.serial)?);
            self.bind(n.row.certname.as_str());
            self.bind(n.row.der.as_slice());
            self.bind(sha256(&n.row.der));
            self.bind(n.status_json);
            self.bind(n.row.not_before);
            self.bind(n.row.not_after);
            self.bind(issued_at);
            self.bind(n.by);
        }
        Ok(())
    }

    /// Stores pending requests (each name once), replacing those stored for the same names when
    /// `replace` (see [`put_requests`]).
    pub(super) fn requests(&mut self, rows: &[NewRequest<'q>], now: i64, replace: bool) {
        if rows.is_empty() {
            return;
        }
        self.statements.push(format!(
            "INSERT INTO requests (certname, csr_der, fingerprint, status_json, submitted_at, submitted_by) \
             VALUES {}{}",
            tuples(rows.len(), 6, self.args.len() + 1),
            if replace { REPLACE_REQUEST } else { "" }
        ));
        for r in rows {
            self.requests.push(r.certname);
            self.bind(r.certname);
            self.bind(r.csr_der);
            self.bind(sha256(r.csr_der));
            self.bind(r.status_json);
            self.bind(now);
            self.bind(r.by);
        }
    }

    /// Removes the pending requests of `certnames`.
    pub(super) fn delete_requests(&mut self, certnames: &[&'q str]) {
        if certnames.is_empty() {
            return;
        }
        self.statements.push(format!(
            "DELETE FROM requests WHERE certname IN ({})",
            list(certnames.len(), self.args.len() + 1)
        ));
        for n in certnames {
            self.bind(*n);
        }
    }

    /// Appends audit rows made by [`audit_inserts`].
    pub(super) fn audit(&mut self, rows: &'q [AuditInsert<'q>]) {
        if rows.is_empty() {
            return;
        }
        self.statements.push(format!(
            "INSERT INTO audit (id, at, actor, action, certname, serial, outcome, detail, hash, mac) VALUES {}",
            tuples(rows.len(), 10, self.args.len() + 1)
        ));
        for r in rows {
            self.bind(r.id);
            self.bind(r.rec.at);
            self.bind(r.rec.actor);
            self.bind(r.rec.action);
            self.bind(r.rec.certname);
            self.bind(r.serial);
            self.bind(r.rec.outcome);
            self.bind(r.rec.detail);
            self.bind(r.hash.as_str());
            self.bind(r.mac.as_deref());
        }
    }

    /// Whether there is nothing to write.
    pub(super) fn is_empty(&self) -> bool {
        self.statements.is_empty() && self.reserve.is_none()
    }

    /// Reserves `n` consecutive serials (answered by [`Writes::run`]).
    pub(super) fn reserve_serials(&mut self, n: u64) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        self.reserve = Some(format!(
            "UPDATE counters SET value = value + ${} WHERE name = 'serial' RETURNING value",
            self.args.len() + 1
        ));
        self.bind(to_i64(n)?);
        Ok(())
    }

    /// Sends the writes (through sqlx in one round trip); the counter's new value when serials
    /// were reserved.
    pub(super) async fn run(self, c: Conn<'_>, backend: super::Backend) -> Result<Option<i64>, StoreError> {
        let c = match c {
            Conn::Sqlx(c) => c,
            Conn::Direct(c) => return self.run_direct(c),
        };
        let Writes {
            mut statements,
            reserve,
            args,
            serials,
            requests,
            ..
        } = self;
        let reserves = reserve.is_some();
        statements.extend(reserve);
        let Some(main) = statements.pop() else {
            return Ok(None);
        };
        let sql = match backend {
            super::Backend::Sqlite => statements
                .into_iter()
                .chain([main])
                .collect::<Vec<_>>()
                .join("; "),
            super::Backend::Postgres if statements.is_empty() => main,
            super::Backend::Postgres => {
                let with: Vec<String> = statements
                    .iter()
                    .enumerate()
                    .map(|(i, s)| format!("w{i} AS ({s})"))
                    .collect();
                format!("WITH {} {main}", with.join(", "))
            }
        };
        match sqlx::query_with(&sql, any_args(&args)?).fetch_all(&mut *c).await {
            Ok(rows) if reserves => match rows.last() {
                Some(r) => Ok(Some(r.try_get(0)?)),
                None => Err(StoreError::Corrupt("counter serial missing".into())),
            },
            Ok(_) => Ok(None),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                Err(duplicate(&serials, &requests).unwrap_or(sqlx::Error::Database(d).into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// [`Writes::run`] on a direct connection: each statement in turn, on this thread.
    fn run_direct(self, c: &mut rusqlite::Connection) -> Result<Option<i64>, StoreError> {
        let ran = (|| {
            for sql in &self.statements {
                direct::prepare(c, sql, &self.args)?.raw_execute()?;
            }
            let Some(reserve) = &self.reserve else {
                return Ok(None);
            };
            let mut st = direct::prepare(c, reserve, &self.args)?;
            let mut rows = st.raw_query();
            let mut end = None;
            while let Some(r) = rows.next()? {
                end = Some(r.get::<_, i64>(0)?);
            }
            end.map(Some)
                .ok_or_else(|| StoreError::Corrupt("counter serial missing".into()))
        })();
        match ran {
            Err(StoreError::Direct(e)) if direct::is_unique_violation(&e) => {
                Err(duplicate(&self.serials, &self.requests).unwrap_or(StoreError::Direct(e)))
            }
            other => other,
        }
    }
}

/// The error for a unique constraint's refusal of writes that stored certificates `serials` or
/// requests `requests`; `None` when they stored neither.
fn duplicate(serials: &[u64], requests: &[&str]) -> Option<StoreError> {
    if !serials.is_empty() {
        let serials: Vec<String> = serials.iter().map(u64::to_string).collect();
        return Some(StoreError::Duplicate(format!(
            "a certificate with serial {}",
            serials.join(" or ")
        )));
    }
    (!requests.is_empty()).then(|| StoreError::Duplicate(duplicate_request(requests)))
}

pub(super) async fn set_audit_mac(c: &mut AnyConnection, id: i64, mac: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE audit SET mac = $1 WHERE id = $2")
        .bind(mac)
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// What an audit append needs to know first (see [`requests_and_audit_ends`]).
pub(super) struct AuditEnds {
    /// The hash of the record asked for, when held.
    pub named_hash: Option<String>,
    /// The last record (id, hash).
    pub last: Option<(i64, String)>,
    /// PostgreSQL: ids drawn from the audit id sequence, in order.
    pub ids: Vec<i64>,
}

/// The hash of audit record `named` (when given and held) and the last record (id, hash), in one
/// look-up.
pub(super) async fn audit_ends(c: Conn<'_>, named: Option<i64>) -> Result<AuditEnds, StoreError> {
    Ok(requests_and_audit_ends(c, &[], named, 0).await?.1)
}

/// The pending requests of `certnames`, with the audit log's ends (see [`audit_ends`]) and, on
/// PostgreSQL, `ids` ids drawn from its sequence: one statement where a write transaction that
/// reads requests and then appends audit rows would send three.
pub(super) async fn requests_and_audit_ends(
    c: Conn<'_>,
    certnames: &[&str],
    named: Option<i64>,
    ids: usize,
) -> Result<(std::collections::HashMap<String, RequestRow>, AuditEnds), StoreError> {
    // The requests first: PostgreSQL types a `UNION`'s columns from left to right, and the untyped
    // NULLs of the audit rows then take the requests' types.
    let branch = format!(
        "SELECT CAST(0 AS BIGINT), certname, csr_der, submitted_at, NULL FROM requests \
         WHERE certname IN ({})",
        list(certnames.len(), 2)
    );
    let mut requests = std::collections::HashMap::new();
    let ends = names_and_audit_ends(c, vec![branch], certnames, named, ids, |r| {
        let row = RequestRow {
            certname: present(r.text(1)?, "a request's certname")?,
            csr_der: present(r.blob(2)?, "a request")?,
            submitted_at: present(r.int(3)?, "a request's time")?,
        };
        requests.insert(row.certname.clone(), row);
        Ok(())
    })
    .await?;
    Ok((requests, ends))
}

/// What each of `certnames` holds (see [`name_states`]), with the audit log's ends and, on
/// PostgreSQL, `ids` ids drawn from its sequence (see [`requests_and_audit_ends`]): one statement.
pub(super) async fn name_states_and_audit_ends(
    c: Conn<'_>,
    certnames: &[&str],
    named: Option<i64>,
    ids: usize,
) -> Result<(std::collections::HashMap<String, &'static str>, AuditEnds), StoreError> {
    // Every column typed in the first branches: both would otherwise leave the id and the hash
    // untyped NULLs, which PostgreSQL makes text before it meets the audit rows' ids.
    let list = list(certnames.len(), 2);
    let branches = vec![
        format!(
            "SELECT CAST(0 AS BIGINT), c.certname, CAST(CASE WHEN r.serial IS NULL THEN 1 ELSE 2 END AS BIGINT), \
             CAST(NULL AS BIGINT), CAST(NULL AS TEXT) FROM certificates c \
             LEFT JOIN revocations r ON r.serial = c.serial \
             WHERE c.certname IN ({list}) AND {CURRENT}"
        ),
        format!(
            "SELECT CAST(0 AS BIGINT), certname, CAST(3 AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS TEXT) \
             FROM requests WHERE certname IN ({list})"
        ),
    ];
    let mut out = std::collections::HashMap::new();
    let ends = names_and_audit_ends(c, branches, certnames, named, ids, |r| {
        name_state(
            &mut out,
            present(r.text(1)?, "a certname")?,
            present(r.int(2)?, "a name's state")?,
        );
        Ok(())
    })
    .await?;
    Ok((out, ends))
}

/// Notes what `name` holds (1 signed, 2 revoked, else requested): a certificate says more than a
/// request for the same name.
fn name_state(out: &mut std::collections::HashMap<String, &'static str>, name: String, state: i64) {
    let state = match state {
        1 => "signed",
        2 => "revoked",
        _ => "requested",
    };
    let held = out.entry(name).or_insert(state);
    if *held == "requested" {
        *held = state;
    }
}

/// One statement: `name_branches` (rows of kind 0, their IN lists over `$2...`, handed to `on_name`),
/// the audit log's ends and the ids drawn ahead. The columns: kind, then four that each kind uses as
/// it needs, the audit rows with the id fourth and the hash fifth. Names empty: only the audit part.
async fn names_and_audit_ends(
    mut c: Conn<'_>,
    name_branches: Vec<String>,
    certnames: &[&str],
    named: Option<i64>,
    ids: usize,
    mut on_name: impl FnMut(&dyn Cells) -> Result<(), StoreError>,
) -> Result<AuditEnds, StoreError> {
    let mut args = vec![Val::from(named.unwrap_or(-1))];
    let mut branches = Vec::with_capacity(name_branches.len() + 2);
    if !certnames.is_empty() {
        branches.extend(name_branches);
        args.extend(certnames.iter().map(|n| Val::text(n)));
    }
    branches.push(
        "SELECT CAST(1 AS BIGINT), NULL, NULL, id, hash FROM audit \
         WHERE id = $1 OR id = (SELECT MAX(id) FROM audit)"
            .to_string(),
    );
    if ids > 0 {
        // The count is written into the text, not bound: PostgreSQL estimates a bound count at a
        // thousand rows in the statement's generic plan, finds it dearer than a plan made for the
        // values, and plans the statement again at every execution (0.2-0.3 ms of its CPU a
        // round, measured). Written, the generic plan costs the same and is kept after the
        // first executions. The text varies with the count as it does with the names.
        branches.push(format!(
            "SELECT CAST(2 AS BIGINT), NULL, NULL, nextval(pg_get_serial_sequence('audit', 'id')), NULL \
             FROM generate_series(1, {ids})"
        ));
    }
    let sql = branches.join(" UNION ALL ");
    let mut ends = AuditEnds {
        named_hash: None,
        last: None,
        ids: Vec::new(),
    };
    c.rows(&sql, &args, |r| {
        match present(r.int(0)?, "a row's kind")? {
            0 => on_name(r)?,
            1 => {
                let id = present(r.int(3)?, "an audit id")?;
                let hash = present(r.text(4)?, "an audit hash")?;
                if Some(id) == named {
                    ends.named_hash = Some(hash.clone());
                }
                if ends.last.as_ref().is_none_or(|(l, _)| *l < id) {
                    ends.last = Some((id, hash));
                }
            }
            _ => ends.ids.push(present(r.int(3)?, "an audit id")?),
        }
        Ok(())
    })
    .await?;
    ends.ids.sort_unstable();
    Ok(ends)
}

/// The last audit row: (id, hash, seal).
pub(super) async fn audit_last(
    c: &mut AnyConnection,
) -> Result<Option<(i64, String, Option<String>)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT id, hash, mac FROM audit ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *c)
            .await?,
    )
}

/// Whether any audit row is sealed.
pub(super) async fn audit_any_sealed(c: &mut AnyConnection) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM audit WHERE mac IS NOT NULL) THEN 1 ELSE 0 END",
    )
    .fetch_one(&mut *c)
    .await?
        != 0)
}

/// Up to `limit` audit rows after `after`, with their seals, oldest first (verification pages through).
pub(super) async fn audit_page(
    pool: &AnyPool,
    after: i64,
    limit: i64,
) -> Result<Vec<(AuditRow, Option<String>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, certname, serial, outcome, detail, hash, mac FROM audit \
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| Ok((audit_row(&r)?, r.try_get("mac")?)))
        .collect()
}

/// An audit row from a query selecting its columns by name.
fn audit_row(r: &sqlx::any::AnyRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        certname: r.try_get("certname")?,
        serial: r.try_get("serial")?,
        outcome: r.try_get("outcome")?,
        detail: r.try_get("detail")?,
        hash: r.try_get("hash")?,
    })
}

pub(super) async fn audit_rows<'e, E: Executor<'e, Database = Any>>(
    e: E,
    certname: Option<&str>,
) -> Result<Vec<AuditRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, certname, serial, outcome, detail, hash FROM audit \
         WHERE ($1 IS NULL OR certname = $1) ORDER BY id",
    )
    .bind(certname)
    .fetch_all(e)
    .await?;
    Ok(rows.iter().map(audit_row).collect::<Result<_, _>>()?)
}

/// The next CRL's `Last-Modified`: `at_least`, or one second after the previous CRL's, whichever is
/// later (the counter is created on first use).
pub(super) async fn next_crl_last_modified(c: &mut AnyConnection, at_least: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO counters (name, value) VALUES ('crl_last_modified', $1) \
         ON CONFLICT (name) DO UPDATE SET value = \
           CASE WHEN excluded.value > counters.value + 1 THEN excluded.value ELSE counters.value + 1 END \
         RETURNING value",
    )
    .bind(at_least)
    .fetch_one(&mut *c)
    .await?)
}

/// The `Last-Modified` of the last parent CRL change (0 when none).
pub(super) async fn parent_crls_last_modified<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> Result<i64, StoreError> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT value FROM counters WHERE name = 'parent_crls_last_modified'")
            .fetch_optional(e)
            .await?;
    Ok(v.unwrap_or(0))
}
