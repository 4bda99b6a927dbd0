-- CQRS read models of the "subscriptions" projector (projections/subscriptions.go). Both tables
-- are derived data: `billingctl projections rebuild subscriptions` recreates them from the event
-- store. Index names follow PostgreSQL's own naming (<table>_<columns>_idx), which the rebuild
-- relies on: it copies the tables with LIKE ... INCLUDING ALL and renames the copies' indexes
-- back to these names when it swaps them in.

-- One row per subscription: the GET /v1/subscriptions/{id} shape as columns (for filtering and
-- aggregation) plus the whole folded domain.Subscription as `state`, from which the API renders
-- it. `had_mrr` remembers whether the subscription ever contributed MRR, so that MRR coming back
-- is a reactivation rather than new business.
CREATE TABLE subscription_view (
    id                   uuid        NOT NULL,
    customer_id          text        NOT NULL,
    plan_id              text        NOT NULL,
    status               text        NOT NULL,
    seats                bigint      NOT NULL,
    currency             text        NOT NULL,
    unit_amount          bigint      NOT NULL,
    "interval"           text        NOT NULL,
    mrr                  bigint      NOT NULL CHECK (mrr >= 0),
    features             text[]      NOT NULL,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    trial_end            timestamptz,
    cancel_at_period_end boolean     NOT NULL,
    canceled_at          timestamptz,
    paused_at            timestamptz,
    scheduled_change     jsonb,
    version              bigint      NOT NULL CHECK (version > 0),
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    had_mrr              boolean     NOT NULL,
    state                jsonb       NOT NULL,
    CONSTRAINT subscription_view_pkey PRIMARY KEY (id)
);

-- GET /v1/subscriptions filters, each paged by id.
CREATE INDEX subscription_view_customer_id_id_idx ON subscription_view (customer_id, id);
CREATE INDEX subscription_view_status_id_idx ON subscription_view (status, id);
CREATE INDEX subscription_view_plan_id_id_idx ON subscription_view (plan_id, id);
-- Dashboard aggregates are per currency.
CREATE INDEX subscription_view_currency_status_idx ON subscription_view (currency, status);

-- One row per event that changed a subscription's MRR. `amount` is the signed change
-- (mrr_after - mrr_before); kind is new (0 -> >0 for the first time), reactivation (0 -> >0
-- again), expansion (up), contraction (down, still > 0) or churn (>0 -> 0). The sum of the
-- amounts before a time is the MRR at that time.
CREATE TABLE mrr_movements (
    event_id        uuid        NOT NULL,
    subscription_id uuid        NOT NULL,
    version         bigint      NOT NULL,
    customer_id     text        NOT NULL,
    plan_id         text        NOT NULL,
    currency        text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('new', 'reactivation', 'expansion', 'contraction', 'churn')),
    amount          bigint      NOT NULL CHECK (amount <> 0),
    mrr_before      bigint      NOT NULL CHECK (mrr_before >= 0),
    mrr_after       bigint      NOT NULL CHECK (mrr_after >= 0),
    CONSTRAINT mrr_movements_pkey PRIMARY KEY (event_id),
    CONSTRAINT mrr_movements_amount_delta_check CHECK (amount = mrr_after - mrr_before)
);

CREATE INDEX mrr_movements_currency_occurred_at_idx ON mrr_movements (currency, occurred_at);
CREATE INDEX mrr_movements_subscription_id_version_idx ON mrr_movements (subscription_id, version);
