CREATE INDEX IF NOT EXISTS events_type_idx ON events (type, global_position);
