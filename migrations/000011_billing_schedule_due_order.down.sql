CREATE INDEX billing_schedule_due_idx ON billing_schedule (due_at);
DROP INDEX billing_schedule_due_order_idx;
