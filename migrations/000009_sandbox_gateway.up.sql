-- The sandbox payment gateway's own records (internal/payments): what a real provider would hold
-- on its side. They live in PostgreSQL rather than in memory so that, like a real provider, the
-- sandbox remembers a charge across a restart of billingd: a process killed after charging must
-- find the charge again by its idempotency key. These tables are not billing's books (those are
-- events); nothing but the sandbox writes them.

-- One row per idempotency key: the primary key is what makes a repeated or concurrent charge with
-- the same key record one outcome only (INSERT ... ON CONFLICT DO NOTHING). A declined charge is
-- recorded too, so that its repeat is declined the same way.
CREATE TABLE sandbox_charges (
    idempotency_key text        PRIMARY KEY,
    id              text        NOT NULL UNIQUE,
    customer_id     text        NOT NULL,
    payment_method  text        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    description     text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('succeeded', 'declined')),
    decline_code    text        NOT NULL,
    decline_message text        NOT NULL,
    -- The sum of the charge's refunds, kept here so that one row lock serialises the refunds of a
    -- charge and the CHECK refuses an over-refund even if the code that checks first is wrong.
    amount_refunded bigint      NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((status = 'declined') = (decline_code <> '')),
    CHECK (status = 'succeeded' OR amount_refunded = 0)
);

-- Listing a customer's charges (Sandbox.Charges) in the order they were made.
CREATE INDEX sandbox_charges_customer_id_created_at_idx ON sandbox_charges (customer_id, created_at);

CREATE TABLE sandbox_refunds (
    idempotency_key text        PRIMARY KEY,
    id              text        NOT NULL UNIQUE,
    charge_id       text        NOT NULL REFERENCES sandbox_charges (id),
    amount          bigint      NOT NULL CHECK (amount > 0),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX sandbox_refunds_charge_id_idx ON sandbox_refunds (charge_id);
