DROP TABLE test_clock;
DROP TABLE billing_schedule;
