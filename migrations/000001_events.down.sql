DROP TABLE IF EXISTS events;
DROP FUNCTION IF EXISTS events_refuse_change();
