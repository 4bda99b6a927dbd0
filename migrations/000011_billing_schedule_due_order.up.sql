-- The scheduler claims due rows in (due_at, kind, stream_id) order. With an index on due_at
-- alone every claim sorted all the rows due at the first instant: all of them under a frozen
-- test clock, and a backlog's worth under load.
CREATE INDEX billing_schedule_due_order_idx ON billing_schedule (due_at, kind, stream_id);
DROP INDEX billing_schedule_due_idx;
