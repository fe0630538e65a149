-- A CA key rollover (`ca rollover start|switch|finish`). From `start`, next_chain_pem holds the next CA
-- certificate (a new key, the same name), published beside the current one. From `switch` it is the
-- current one and previous_chain_pem holds the old one, still trusted and still signing a CRL of every
-- revocation until `finish`: that CRL has our CRL's number, dates and entries, so only its own head
-- and tail are stored (previous_head, the entries of our CRL, previous_tail).
ALTER TABLE ca ADD COLUMN next_chain_pem TEXT;
ALTER TABLE ca ADD COLUMN previous_chain_pem TEXT;
ALTER TABLE crl ADD COLUMN previous_head BYTEA;
ALTER TABLE crl ADD COLUMN previous_tail BYTEA;
