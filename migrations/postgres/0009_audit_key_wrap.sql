-- The audit log's sealing key across CA key rollovers. NULL: the key is derived from the CA key (as
-- before any rollover). Set by `ca rollover switch`: the sealing key in use, encrypted for the new CA
-- key (AES-256-GCM under a key derived from it), so the records sealed before the switch and after it
-- verify with one key.
ALTER TABLE ca ADD COLUMN audit_key_wrap BYTEA;
