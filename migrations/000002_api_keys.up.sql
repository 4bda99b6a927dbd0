-- API keys: only a SHA-256 of the secret is stored; the secret is shown once at creation.
CREATE TABLE api_keys (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    scope       text        NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    secret_hash bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Idempotency records, written in the same transaction as the events a command appends, so a
-- replayed request can never append twice. Keys are scoped to the API key that sent them.
CREATE TABLE idempotency_keys (
    api_key_id      uuid        NOT NULL REFERENCES api_keys (id),
    key             text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea       NOT NULL,
    response_status integer     NOT NULL,
    response_body   bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
