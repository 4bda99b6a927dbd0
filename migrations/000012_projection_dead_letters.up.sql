-- Dead letters: entries (or caught-up events) a projector could not apply after MaxDeliveries
-- tries. A row is written before the Redis entry is acknowledged (by a catch-up: in the
-- transaction that moves the partition's checkpoint past the event), so once the checkpoint
-- passes an event it is applied or has a row here. They live here rather than in Redis because
-- Redis may lose its data, and with it the only record of an event the read model lacks.
-- Redelivery after a crash between the insert and the acknowledgement dead-letters the entry
-- again: UNIQUE (projector, entry_id) makes that an update of the same row.
CREATE TABLE projection_dead_letters (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projector   text        NOT NULL,
    partition   int         NOT NULL,
    -- The Redis entry id, which is the event's log position ("<transaction_id>-<global_position>").
    entry_id    text        NOT NULL,
    -- NULL when the entry was too broken to name its event; redrive then finds it by entry_id.
    event_id    uuid,
    event_type  text        NOT NULL DEFAULT '',
    stream_id   uuid,
    version     bigint,
    error       text        NOT NULL,
    deliveries  bigint      NOT NULL,
    failed_at   timestamptz NOT NULL,
    UNIQUE (projector, entry_id)
);
