-- CQRS read models of the billing aggregates: the "invoices" projector
-- (projections/invoices.go) writes invoice_view and invoice_movements, the "entitlements"
-- projector (projections/entitlements.go) writes subscription_entitlements. All three are
-- derived data: `billingctl projections rebuild invoices|entitlements` recreates them from the
-- event store. Index names follow PostgreSQL's own naming (<table>_<columns>_idx), which the
-- rebuild relies on when it swaps copies made with LIKE ... INCLUDING ALL back in.
-- (000008 and 000009 are taken by other branches.)

-- One row per invoice: the GET /v1/invoices/{id} shape as columns plus the whole folded
-- domain.Invoice as `state`, from which the API renders it. subscription_id and upgrade_id are
-- uuid because they are the ids of the subscription and upgrade streams: an invoice naming
-- anything else is a bug that should stop the projector, not a value to keep.
CREATE TABLE invoice_view (
    id              uuid        NOT NULL,
    number          text        NOT NULL,
    subscription_id uuid        NOT NULL,
    customer_id     text        NOT NULL,
    currency        text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    reason          text        NOT NULL,
    subtotal        bigint      NOT NULL,
    credit_applied  bigint      NOT NULL,
    total           bigint      NOT NULL CHECK (total >= 0),
    attempts        integer     NOT NULL CHECK (attempts >= 0),
    amount_paid     bigint      NOT NULL CHECK (amount_paid >= 0),
    amount_refunded bigint      NOT NULL CHECK (amount_refunded >= 0),
    next_attempt_at timestamptz,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    paid_at         timestamptz,
    voided_at       timestamptz,
    upgrade_id      uuid,
    lines           jsonb       NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    updated_at      timestamptz NOT NULL,
    state           jsonb       NOT NULL,
    CONSTRAINT invoice_view_pkey PRIMARY KEY (id)
);

-- GET /v1/subscriptions/{id}/invoices, newest first.
CREATE INDEX invoice_view_subscription_id_created_at_idx ON invoice_view (subscription_id, created_at);
-- A customer's invoices, and dunning-style scans of what is open per currency.
CREATE INDEX invoice_view_customer_id_created_at_idx ON invoice_view (customer_id, created_at);
CREATE INDEX invoice_view_currency_status_idx ON invoice_view (currency, status);

-- One row per invoice event that moved money or changed what is owed, dated by the event's
-- time, with that event's contribution to each dashboard revenue figure (all minor units):
-- invoiced (an invoice's total when created), collected (a payment), refunded, credit_granted
-- (credit added to the customer's balance: a credit invoice's, or the credit a void gives
-- back), credit_applied (credit an invoice consumed), voided and uncollectible (the total of
-- an invoice voided or written off), and outstanding: the signed change of the amount open
-- (owed and not yet paid, voided or written off). The sum of a column over events before a
-- time is that figure up to that time, so the dashboard buckets any range exactly.
CREATE TABLE invoice_movements (
    event_id        uuid        NOT NULL,
    invoice_id      uuid        NOT NULL,
    version         bigint      NOT NULL,
    type            text        NOT NULL,
    subscription_id uuid        NOT NULL,
    customer_id     text        NOT NULL,
    currency        text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    invoiced        bigint      NOT NULL CHECK (invoiced >= 0),
    collected       bigint      NOT NULL CHECK (collected >= 0),
    refunded        bigint      NOT NULL CHECK (refunded >= 0),
    credit_granted  bigint      NOT NULL CHECK (credit_granted >= 0),
    credit_applied  bigint      NOT NULL CHECK (credit_applied >= 0),
    voided          bigint      NOT NULL CHECK (voided >= 0),
    uncollectible   bigint      NOT NULL CHECK (uncollectible >= 0),
    outstanding     bigint      NOT NULL,
    CONSTRAINT invoice_movements_pkey PRIMARY KEY (event_id)
);

CREATE INDEX invoice_movements_currency_occurred_at_idx ON invoice_movements (currency, occurred_at);
CREATE INDEX invoice_movements_invoice_id_version_idx ON invoice_movements (invoice_id, version);

-- One row per subscription: the plan's features and the status that decides whether they are
-- granted (active or trialing), plus the folded domain.Subscription as `state` so the projector
-- folds with domain.Evolve exactly as the aggregate does. `version` is what the upgrade saga
-- waits for: the new plan is visible once the row has folded the plan change.
CREATE TABLE subscription_entitlements (
    subscription_id uuid        NOT NULL,
    customer_id     text        NOT NULL,
    plan_id         text        NOT NULL,
    status          text        NOT NULL,
    features        text[]      NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    updated_at      timestamptz NOT NULL,
    state           jsonb       NOT NULL,
    CONSTRAINT subscription_entitlements_pkey PRIMARY KEY (subscription_id)
);

-- GET /v1/customers/{customer_id}/entitlements.
CREATE INDEX subscription_entitlements_customer_id_idx ON subscription_entitlements (customer_id);
