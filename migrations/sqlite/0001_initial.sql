-- The CA's whole state. Portable SQL: every construct here has a direct PostgreSQL equivalent
-- (INTEGER PRIMARY KEY -> BIGINT/identity, BLOB -> BYTEA). Times are Unix seconds (UTC).

-- The signing CA: its chain, signing CA first. One row.
CREATE TABLE ca (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    chain_pem   TEXT    NOT NULL,
    key_id      BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Counters advanced inside the write transaction that uses them:
--   serial      the next serial to issue (never reused, never decreases)
--   crl_number  the number of the current CRL
CREATE TABLE counters (
    name   TEXT    PRIMARY KEY,
    value  INTEGER NOT NULL
);

-- Pending certificate requests, one per certname.
CREATE TABLE requests (
    certname      TEXT    PRIMARY KEY,
    csr_der       BLOB    NOT NULL,
    fingerprint   TEXT    NOT NULL,   -- SHA-256 of the DER, as Puppet prints it
    status_json   TEXT    NOT NULL,   -- puppetserver's status object, made once at submission
    submitted_at  INTEGER NOT NULL,
    submitted_by  TEXT    NOT NULL
);

-- Every certificate ever issued. A certname's current certificate is its highest serial not cleaned.
CREATE TABLE certificates (
    serial      INTEGER PRIMARY KEY,
    certname    TEXT    NOT NULL,
    der         BLOB    NOT NULL,
    fingerprint TEXT    NOT NULL,     -- SHA-256 of the DER, as Puppet prints it
    status_json TEXT    NOT NULL,     -- puppetserver's status object ("state":"signed"), made once at issuance
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    issued_at   INTEGER NOT NULL,
    issued_by   TEXT    NOT NULL,
    cleaned_at  INTEGER
);
CREATE INDEX certificates_by_certname ON certificates (certname, serial);

-- Revoked serials (also those of imported certificates we hold no copy of).
CREATE TABLE revocations (
    serial      INTEGER PRIMARY KEY,
    certname    TEXT,
    revoked_at  INTEGER NOT NULL,
    reason      INTEGER NOT NULL
);

-- The current CRL, as signed. One row.
CREATE TABLE crl (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    number       INTEGER NOT NULL,
    this_update  INTEGER NOT NULL,
    next_update  INTEGER NOT NULL,
    der          BLOB    NOT NULL
);

-- CRLs of the parent CAs (an intermediate CA's root, ...), served after our own: position 1 is the
-- direct parent. Re-signed here only when the parent's key is present, else updated by upload.
CREATE TABLE parent_crls (
    position  INTEGER PRIMARY KEY,
    der       BLOB    NOT NULL
);

-- Inventory lines of an imported CA for certificates we hold no copy of (cleaned before the import),
-- kept so that an export writes the inventory back whole.
CREATE TABLE imported_inventory (
    serial  INTEGER PRIMARY KEY,
    line    TEXT    NOT NULL
);

-- Every decision and change, with who asked.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    certname  TEXT,
    serial    INTEGER,
    outcome   TEXT    NOT NULL,
    detail    TEXT,
    -- SHA-256 over the previous row's hash and this row's fields: editing or deleting a row breaks
    -- the chain from there on (`ca audit verify`).
    hash      TEXT    NOT NULL
);
CREATE INDEX audit_by_certname ON audit (certname, id);
