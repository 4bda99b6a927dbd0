-- What the billing processes must do and when, kept in the same transaction as the events that
-- make it due: renewals and trial reminders of subscriptions, payment attempts of invoices, and
-- upgrade sagas to resume. A row is derived from its aggregate's state (internal/billing
-- schedule.go), so it is never the only record of anything.
--
-- due_at is on the service clock (the test clock in test mode); claimed_until is a lease on the
-- database's own clock, taken by the process working on the row, so a process that dies
-- mid-work only delays the row until the lease runs out.
CREATE TABLE billing_schedule (
    kind          text        NOT NULL CHECK (kind IN ('renewal', 'trial_reminder', 'collect', 'upgrade')),
    stream_id     uuid        NOT NULL,
    due_at        timestamptz NOT NULL,
    claimed_until timestamptz,
    PRIMARY KEY (kind, stream_id)
);
CREATE INDEX billing_schedule_due_idx ON billing_schedule (due_at);

-- The test clock shared by every billingd process of a deployment (BILLING_TEST_CLOCK=true).
CREATE TABLE test_clock (
    singleton boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    now       timestamptz NOT NULL
);
