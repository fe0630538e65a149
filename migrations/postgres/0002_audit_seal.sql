-- The seal of each audit row: HMAC-SHA256 over its id and hash with a key derived from the CA key
-- (NULL for rows written before this migration; the last of those is sealed at the next start).
ALTER TABLE audit ADD COLUMN mac TEXT;
