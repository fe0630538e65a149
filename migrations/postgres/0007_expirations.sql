-- `ca expirations`, the expirations endpoint and /metrics find the certificates that expire within a
-- window without reading every certificate.
CREATE INDEX certificates_by_not_after ON certificates (not_after);
