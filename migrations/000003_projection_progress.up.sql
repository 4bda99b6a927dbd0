-- How far each projector has applied each event stream. Written in the same transaction as the
-- projector's read-model change, so a redelivered event is recognised and changes nothing.
CREATE TABLE projection_versions (
    projector text   NOT NULL,
    stream_id uuid   NOT NULL,
    version   bigint NOT NULL CHECK (version > 0),
    PRIMARY KEY (projector, stream_id)
);

-- The last entry each projector applied from each Redis partition, as a position in the global
-- log. If Redis loses its data, a projector catches up from the event store after these.
CREATE TABLE projection_checkpoints (
    projector       text    NOT NULL,
    partition       integer NOT NULL,
    transaction_id  xid8    NOT NULL,
    global_position bigint  NOT NULL,
    PRIMARY KEY (projector, partition)
);
