-- Veil broker store, schema 1.
--
-- Durable records (resources sealed under the KEK, policies, reference
-- values, the sealed token signing key): one table keyed by namespace and
-- key, written with the default synchronous commit.
CREATE TABLE IF NOT EXISTS veil_records (
    ns         TEXT        NOT NULL,
    key        TEXT        NOT NULL,
    value      BYTEA       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (ns, key)
);

-- Sessions (challenges, single-use nonces, cookie tokens). UNLOGGED: no
-- WAL, so handshakes do not wait for fsync; PostgreSQL empties the table
-- after a crash of the database server, which only makes guests attest
-- again (a nonce can never be replayed: a missing session is refused).
-- The same trade-off as the embedded store's non-durable session writes.
CREATE UNLOGGED TABLE IF NOT EXISTS veil_sessions (
    id         TEXT   NOT NULL PRIMARY KEY,
    value      BYTEA  NOT NULL,
    expires_at BIGINT
);
CREATE INDEX IF NOT EXISTS veil_sessions_expiry
    ON veil_sessions (expires_at) WHERE expires_at IS NOT NULL;
