-- How far the relay has published the event log to Redis Streams, as a position in the global
-- log. The relay moves it after the entries are in Redis; publishing again from an older
-- checkpoint is harmless because Redis refuses an entry id it already holds.
CREATE TABLE relay_checkpoints (
    name            text        PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
