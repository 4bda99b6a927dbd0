-- Snapshots are only a cache: dropping them loses nothing.
DROP TABLE IF EXISTS snapshots;
