-- Aggregate snapshots: a cache of a stream's folded state, so that loading an aggregate for a
-- command reads the latest snapshot plus the events after it instead of the whole history.
-- Unlike events, snapshots are mutable and disposable: deleting any or all of them changes no
-- result, only load time. One row per stream (the latest snapshot only).
CREATE TABLE snapshots (
    stream_id            uuid        PRIMARY KEY,
    stream_type          text        NOT NULL,
    -- The stream version the state was folded up to, and the id of the event at that version:
    -- a snapshot whose event is not (or no longer) in the store, e.g. after restoring the events
    -- from another backup, is ignored.
    version              bigint      NOT NULL CHECK (version > 0),
    last_event_id        uuid        NOT NULL,
    -- The version of the shape of the STATE (not of the events): a snapshot written by code
    -- with another state shape is ignored by the reader rather than misread.
    state_schema_version integer     NOT NULL,
    state                jsonb       NOT NULL,
    taken_at             timestamptz NOT NULL DEFAULT now()
);
