package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// SubscriptionsName is the name of the subscriptions projector: its consumer group and the key
// of its progress.
const SubscriptionsName = "subscriptions"

// The live tables of the subscriptions read model (migration 000005).
const (
	SubscriptionViewTable = "subscription_view"
	MRRMovementsTable     = "mrr_movements"
)

// Subscriptions maintains two tables in one transaction per event:
//
//   - subscription_view: one row per subscription, the GET /v1/subscriptions/{id} shape as
//     columns plus the whole folded domain.Subscription as `state`. Apply is
//     state = domain.Evolve(state, event), the same fold as the aggregate, so the row is exactly
//     what eventstore.LoadSubscription returns for the same events.
//   - mrr_movements: one row per event that changed the subscription's MRR
//     (Subscription.MRR() before and after), classified by ClassifyMovement.
//
// Events of other stream types are skipped. Apply is also idempotent by itself: the row's version
// is the number of events folded, so an event at or below it changes nothing and one beyond the
// next version is refused with ErrOutOfOrder, whatever the progress table says.
//
// It writes to its tables by name when it runs, which is what lets Rebuild swap fresh tables in
// under the same names.
type Subscriptions struct {
	view, movements string // table names
	loadSQL         string
	upsertSQL       string
	movementSQL     string
}

// NewSubscriptions returns the projector over the live tables.
func NewSubscriptions() *Subscriptions {
	return newSubscriptions(SubscriptionViewTable, MRRMovementsTable)
}

func newSubscriptions(view, movements string) *Subscriptions {
	v, m := pgx.Identifier{view}.Sanitize(), pgx.Identifier{movements}.Sanitize()
	updates := make([]string, 0, len(viewColumns)-1)
	for _, c := range viewColumns[1:] {
		updates = append(updates, c+" = excluded."+c)
	}
	return &Subscriptions{
		view: view, movements: movements,
		loadSQL: byKeySQL(v, "id", "id, state, had_mrr"),
		upsertSQL: `INSERT INTO ` + v + ` (` + strings.Join(viewColumns, ", ") + `) VALUES (` + placeholders(len(viewColumns)) + `)
			ON CONFLICT (id) DO UPDATE SET ` + strings.Join(updates, ", ") + newerOnly(v),
		movementSQL: `INSERT INTO ` + m + ` (` + strings.Join(movementColumns, ", ") + `) VALUES (` + placeholders(len(movementColumns)) + `)
			ON CONFLICT (event_id) DO NOTHING`,
	}
}

// viewColumns are subscription_view's columns in the order viewRow.values gives them; id first.
var viewColumns = []string{"id", "customer_id", "plan_id", "status", "seats", "currency", "unit_amount", `"interval"`,
	"mrr", "features", "current_period_start", "current_period_end", "trial_end", "cancel_at_period_end",
	"canceled_at", "paused_at", "scheduled_change", "version", "created_at", "updated_at", "had_mrr", "state"}

var movementColumns = []string{"event_id", "subscription_id", "version", "customer_id", "plan_id", "currency",
	"occurred_at", "kind", "amount", "mrr_before", "mrr_after"}

func placeholders(n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = fmt.Sprintf("$%d", i+1)
	}
	return strings.Join(p, ", ")
}

// Name implements Projector.
func (p *Subscriptions) Name() string { return SubscriptionsName }

// Reads reports that the projector reads only subscription streams.
func (p *Subscriptions) Reads(streamType string) bool {
	return streamType == eventstore.SubscriptionStream
}

// Tables implements Rebuildable: the tables this projector writes.
func (p *Subscriptions) Tables() []string { return []string{p.view, p.movements} }

// Into implements Rebuildable: the same projector writing to other tables.
func (p *Subscriptions) Into(tables map[string]string) Projector {
	rename := func(t string) string {
		if to, ok := tables[t]; ok {
			return to
		}
		return t
	}
	return newSubscriptions(rename(p.view), rename(p.movements))
}

// Apply implements Projector.
func (p *Subscriptions) Apply(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	return p.applyBatch(ctx, tx, []eventstore.Event{e})
}

// viewRow is one subscription_view row being changed.
type viewRow struct {
	state  domain.Subscription
	hadMRR bool
}

// applyBatch applies events (each stream's in version order) with one read of the rows they
// touch and one round trip of writes. Rebuild uses it for whole batches; Apply for one event.
func (p *Subscriptions) applyBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	var ids []uuid.UUID
	rows := map[uuid.UUID]*viewRow{}
	for _, e := range events {
		if e.StreamType != eventstore.SubscriptionStream {
			continue
		}
		if _, ok := rows[e.StreamID]; !ok {
			rows[e.StreamID] = &viewRow{}
			ids = append(ids, e.StreamID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if err := p.load(ctx, tx, ids, rows); err != nil {
		return err
	}

	var changed []uuid.UUID
	dirty := map[uuid.UUID]bool{}
	batch := &pgx.Batch{}
	for _, e := range events {
		if e.StreamType != eventstore.SubscriptionStream {
			continue
		}
		r := rows[e.StreamID]
		switch {
		case e.Version <= r.state.Version:
			continue // already folded
		case e.Version > r.state.Version+1:
			return fmt.Errorf("%s: %s version %d, row at version %d: %w", p.view, e.StreamID, e.Version, r.state.Version, ErrOutOfOrder)
		}
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			return err
		}
		before := r.state.MRR()
		next := domain.Evolve(r.state, de)
		if next.Version != e.Version {
			return fmt.Errorf("event %s (%s, stream %s version %d) folds to version %d", e.ID, e.Type, e.StreamID, e.Version, next.Version)
		}
		after := next.MRR()
		if kind, ok := ClassifyMovement(before, after, r.hadMRR); ok {
			m := Movement{EventID: e.ID, SubscriptionID: e.StreamID, Version: e.Version, CustomerID: next.CustomerID,
				PlanID: next.Plan.PlanID, Currency: next.Plan.Currency, OccurredAt: e.OccurredAt,
				Kind: kind, Amount: after - before, MRRBefore: before, MRRAfter: after}
			batch.Queue(p.movementSQL, m.EventID, m.SubscriptionID, m.Version, m.CustomerID, m.PlanID, m.Currency,
				m.OccurredAt, string(m.Kind), m.Amount, m.MRRBefore, m.MRRAfter)
		}
		r.state, r.hadMRR = next, r.hadMRR || after > 0
		if !dirty[e.StreamID] {
			dirty[e.StreamID] = true
			changed = append(changed, e.StreamID)
		}
	}
	for _, id := range changed {
		values, err := rows[id].values(id)
		if err != nil {
			return err
		}
		batch.Queue(p.upsertSQL, values...)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("%s: write: %w", p.view, err)
	}
	return nil
}

func (p *Subscriptions) load(ctx context.Context, tx pgx.Tx, ids []uuid.UUID, rows map[uuid.UUID]*viewRow) error {
	res, err := tx.Query(ctx, p.loadSQL, ids)
	if err != nil {
		return fmt.Errorf("%s: load: %w", p.view, err)
	}
	defer res.Close()
	for res.Next() {
		var id uuid.UUID
		var state []byte
		var hadMRR bool
		if err := res.Scan(&id, &state, &hadMRR); err != nil {
			return fmt.Errorf("%s: load: %w", p.view, err)
		}
		s, err := DecodeState(state)
		if err != nil {
			return fmt.Errorf("%s: row %s: %w", p.view, id, err)
		}
		rows[id].state, rows[id].hadMRR = s, hadMRR
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("%s: load: %w", p.view, err)
	}
	return nil
}

// ScheduledChangeJSON is how subscription_view.scheduled_change stores a scheduled plan change:
// the API's shape.
type ScheduledChangeJSON struct {
	PlanID      string    `json:"plan_id"`
	Seats       int64     `json:"seats"`
	UnitAmount  int64     `json:"unit_amount"`
	EffectiveAt time.Time `json:"effective_at"`
}

// values returns the row's column values in viewColumns order.
func (r *viewRow) values(id uuid.UUID) ([]any, error) {
	s := r.state
	state, err := EncodeState(s)
	if err != nil {
		return nil, err
	}
	var scheduled any // SQL NULL unless a change is scheduled
	if c := s.ScheduledChange; c != nil {
		b, err := json.Marshal(ScheduledChangeJSON{PlanID: c.Plan.PlanID, Seats: c.Seats, UnitAmount: c.Plan.UnitAmount, EffectiveAt: c.EffectiveAt})
		if err != nil {
			return nil, err
		}
		scheduled = json.RawMessage(b)
	}
	return []any{id, s.CustomerID, s.Plan.PlanID, string(s.Status), s.Seats, s.Plan.Currency, s.Plan.UnitAmount,
		string(s.Plan.Interval), s.MRR(), append([]string{}, s.Plan.Features...), s.PeriodStart, s.PeriodEnd,
		optionalTime(s.TrialEnd), s.CancelAtPeriodEnd, optionalTime(s.CanceledAt), optionalTime(s.PausedAt),
		scheduled, s.Version, s.CreatedAt, s.UpdatedAt, r.hadMRR, json.RawMessage(state)}, nil
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// EncodeState is the JSON stored in subscription_view.state: the domain.Subscription itself.
func EncodeState(s domain.Subscription) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode subscription state: %w", err)
	}
	return b, nil
}

// DecodeState reads subscription_view.state back. Unknown fields are refused, so a state stored
// by a different version of domain.Subscription fails loudly (rebuild the read model) rather
// than being misread.
func DecodeState(data []byte) (domain.Subscription, error) {
	var s domain.Subscription
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return domain.Subscription{}, fmt.Errorf("decode subscription state: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return domain.Subscription{}, fmt.Errorf("decode subscription state: unexpected data after the object")
	}
	return s, nil
}
