-- Nothing reads events by type through an index (GET /v1/events filters the gap-free log as it
-- reads it), and every index costs each append: BenchmarkAppend measured the event store at
-- 0.78x a bare INSERT at 32 writers with it.
DROP INDEX IF EXISTS events_type_idx;
