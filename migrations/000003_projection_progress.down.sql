DROP TABLE IF EXISTS projection_checkpoints;
DROP TABLE IF EXISTS projection_versions;
