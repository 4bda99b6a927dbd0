// Package chaos is the fault suite of issue 7: it runs real billingd processes against a
// Postgres and a Redis, drives them with a mixed workload whose every acknowledged answer is
// recorded (Ack), injects one fault per scenario (kill -9 of a process, Redis emptied, Postgres
// restarted, 50 writers on one subscription), and then checks the store, the read models, the
// Redis streams and the payment gateway against what was acknowledged (Check).
//
// `make chaos` runs every scenario at full length; `make test` runs the short form.
package chaos
