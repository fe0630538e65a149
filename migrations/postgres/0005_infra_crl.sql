-- puppetserver's infrastructure CRL (`enable-infra-crl`): the certnames of infrastructure nodes
-- (compilers, replicas...), and a second CRL, signed by the CA, listing only the revocations of their
-- certificates. With `enable-infra-crl` it is what agents download instead of the full CRL (agents
-- only connect to infrastructure nodes); the server's own TLS checks always use every revocation.
-- Changes to either advance the `parent_crls` counter, so readers reload the served chain.
CREATE TABLE infra_nodes (
    certname  TEXT PRIMARY KEY
);
CREATE TABLE infra_crl (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    number       BIGINT NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL,
    der          BYTEA   NOT NULL
);
