DROP TABLE IF EXISTS projection_dead_letters;
