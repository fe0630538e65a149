-- The CRL stored in pieces, so that a revocation writes what it adds (a few hundred bytes), not the
-- whole CRL (megabytes at 100,000 entries), and a replica reads only what changed since the CRL it
-- holds. The signed DER is `head` (everything before the revokedCertificates contents) + the entries
-- + `tail` (everything after them). The entries are the segments numbered `entries_from` (a CRL
-- signed from the database: all its entries) up to `number` (each later CRL: the entries it appended),
-- in order. Rows from before this migration keep their whole DER in `der` (head NULL) until the next
-- CRL is signed.
ALTER TABLE crl ADD COLUMN head BLOB;
ALTER TABLE crl ADD COLUMN tail BLOB;
ALTER TABLE crl ADD COLUMN entries_from INTEGER;
CREATE TABLE crl_segments (
    number   INTEGER PRIMARY KEY,
    entries  BLOB    NOT NULL
);
