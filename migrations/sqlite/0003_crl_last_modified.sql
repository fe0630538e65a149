-- The CRL's Last-Modified (Unix seconds): fixed when the CRL is signed, strictly later than the previous
-- CRL's (the `crl_last_modified` counter), so every process and replica serves the same one and an
-- If-Modified-Since taken from an older CRL never matches a newer one. Existing CRLs: thisUpdate + 1.
ALTER TABLE crl ADD COLUMN last_modified INTEGER NOT NULL DEFAULT 0;
UPDATE crl SET last_modified = this_update + 1;
