package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// EntitlementsName is the name of the entitlements projector: its consumer group and the key of
// its progress.
const EntitlementsName = "entitlements"

// EntitlementsTable is the live table of the entitlements read model (migration 000010).
const EntitlementsTable = "subscription_entitlements"

// Entitlements maintains subscription_entitlements: one row per subscription with its plan's
// features and its status, folded from the subscription's events with domain.Evolve (the whole
// state is kept as `state`, so the fold is the aggregate's own). It is a projector of its own,
// rather than a query of subscription_view, so that what a customer may use has its own
// consumer, lag and rebuild, and the upgrade saga can wait on exactly it (EntitlementsVisible).
//
// Events of other stream types are skipped. Like Subscriptions it is idempotent by the row's
// version on its own, and writes to its table by name so Rebuild can swap a fresh one in.
type Entitlements struct {
	table     string
	loadSQL   string
	upsertSQL string
}

// NewEntitlements returns the projector over the live table.
func NewEntitlements() *Entitlements { return newEntitlements(EntitlementsTable) }

func newEntitlements(table string) *Entitlements {
	t := pgx.Identifier{table}.Sanitize()
	return &Entitlements{
		table:     table,
		loadSQL:   byKeySQL(t, "subscription_id", "subscription_id, state"),
		upsertSQL: upsertSQL(t, entitlementColumns),
	}
}

// entitlementColumns are the table's columns in the order Apply writes them; the key first.
var entitlementColumns = []string{"subscription_id", "customer_id", "plan_id", "status", "features", "version",
	"updated_at", "state"}

// Name implements Projector.
func (p *Entitlements) Name() string { return EntitlementsName }

// Reads reports that the projector reads only subscription streams.
func (p *Entitlements) Reads(streamType string) bool {
	return streamType == eventstore.SubscriptionStream
}

// Tables implements Rebuildable: the tables this projector writes.
func (p *Entitlements) Tables() []string { return []string{p.table} }

// Into implements Rebuildable: the same projector writing to another table.
func (p *Entitlements) Into(tables map[string]string) Projector {
	return newEntitlements(renamed(tables, p.table))
}

// Apply implements Projector.
func (p *Entitlements) Apply(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	return p.applyBatch(ctx, tx, []eventstore.Event{e})
}

// applyBatch applies events (each stream's in version order) with one read of the rows they
// touch and one round trip of writes.
func (p *Entitlements) applyBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	load := func(ids []uuid.UUID) (map[uuid.UUID]domain.Subscription, error) {
		return loadStates(ctx, tx, p.loadSQL, ids, DecodeState)
	}
	changed, states, err := foldBatch(events, eventstore.SubscriptionStream, p.table, load, domain.Evolve,
		func(s domain.Subscription) int64 { return s.Version }, nil)
	if err != nil || len(changed) == 0 {
		return err
	}
	batch := &pgx.Batch{}
	for _, id := range changed {
		s := states[id]
		state, err := EncodeState(s)
		if err != nil {
			return err
		}
		batch.Queue(p.upsertSQL, id, s.CustomerID, s.Plan.PlanID, string(s.Status), append([]string{}, s.Plan.Features...),
			s.Version, s.UpdatedAt, json.RawMessage(state))
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("%s: write: %w", p.table, err)
	}
	return nil
}

// grantingStatuses are the statuses in which a subscription's features may be used: a
// subscription past due, paused, unpaid or canceled grants nothing.
var grantingStatuses = []string{string(domain.StatusActive), string(domain.StatusTrialing)}

// CustomerFeatures is what a customer may use now.
type CustomerFeatures struct {
	CustomerID string
	// Features is the union of the subscriptions' features, sorted, without duplicates.
	Features []string
	// Subscriptions are the customer's subscriptions that grant features (active or trialing),
	// in id order (UUIDv7, so in creation order).
	Subscriptions []SubscriptionFeatures
}

// SubscriptionFeatures is one subscription's grant: its plan's features.
type SubscriptionFeatures struct {
	SubscriptionID uuid.UUID
	PlanID         string
	Status         domain.Status
	Features       []string
	Version        int64 // the events the row has folded
}

// CustomerEntitlements reads from the entitlements read model the features customerID may use
// now. A customer without subscriptions, or none that grants anything, has empty lists (never
// nil), not an error: customer ids belong to the caller's system, not to this one.
func CustomerEntitlements(ctx context.Context, q eventstore.Querier, customerID string) (CustomerFeatures, error) {
	out := CustomerFeatures{CustomerID: customerID, Features: []string{}, Subscriptions: []SubscriptionFeatures{}}
	rows, err := q.Query(ctx, `SELECT subscription_id, plan_id, status, features, version FROM `+EntitlementsTable+`
		WHERE customer_id = $1 AND status = ANY($2) ORDER BY subscription_id`, customerID, grantingStatuses)
	if err != nil {
		return out, fmt.Errorf("entitlements of %s: %w", customerID, err)
	}
	var s SubscriptionFeatures
	var status string
	_, err = pgx.ForEachRow(rows, []any{&s.SubscriptionID, &s.PlanID, &status, &s.Features, &s.Version}, func() error {
		s.Status, s.Features = domain.Status(status), slices.Clone(s.Features) // the next row scans into s again
		out.Subscriptions = append(out.Subscriptions, s)
		out.Features = append(out.Features, s.Features...)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("entitlements of %s: %w", customerID, err)
	}
	slices.Sort(out.Features)
	out.Features = slices.Compact(out.Features)
	return out, nil
}

// EntitlementsVisible reports whether the entitlements read model has folded subscriptionID's
// stream up to at least version, so that CustomerEntitlements answers with the subscription as
// it was after that event. The upgrade saga waits on it before it completes: the customer must
// be able to use what they just paid for.
func EntitlementsVisible(ctx context.Context, q eventstore.Querier, subscriptionID uuid.UUID, version int64) (bool, error) {
	var folded int64
	err := q.QueryRow(ctx, `SELECT version FROM `+EntitlementsTable+` WHERE subscription_id = $1`, subscriptionID).Scan(&folded)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("entitlements of %s: %w", subscriptionID, err)
	}
	return folded >= version, nil
}
