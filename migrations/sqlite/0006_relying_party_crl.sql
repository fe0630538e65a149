-- The relying parties' CRL (`GET /crl.pem`, `/crl.der`): for services other than Puppet agents, which
-- need a short nextUpdate. It has the same number, thisUpdate and entries as the agents' CRL stored in
-- the same row, so only its own head (with its nextUpdate) and tail (with its signature) are stored:
-- the CRL is relying_head, then the entries of the agents' CRL, then relying_tail. NULL until the
-- first CRL signed by a version that signs it.
ALTER TABLE crl ADD COLUMN relying_next_update INTEGER;
ALTER TABLE crl ADD COLUMN relying_head BLOB;
ALTER TABLE crl ADD COLUMN relying_tail BLOB;
