package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
	"github.com/billing-oss/billing/projections/projectionstest"
)

// t0 is where every test's fake time starts.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// store runs real commands against a test database: load, domain.Decide at a fake time,
// eventstore.Append, as the API does.
type store struct {
	t   testing.TB
	db  *pgxpool.Pool
	now time.Time
}

func newStore(t testing.TB) *store {
	return &store{t: t, db: testenv.Postgres(t), now: t0}
}

// exec decides cmd against the subscription's current state and appends the events. A refusal
// by the domain is returned; a store failure fails the test.
func (s *store) exec(id uuid.UUID, cmd domain.Command) ([]eventstore.Event, error) {
	s.t.Helper()
	ctx := context.Background()
	sub, _, err := eventstore.LoadSubscription(ctx, s.db, id, eventstore.LoadOptions{})
	if err != nil {
		s.t.Fatalf("load %s: %v", id, err)
	}
	events, err := domain.Decide(sub, cmd, s.now)
	if err != nil {
		return nil, err
	}
	enc, err := eventstore.EncodeEvents(events, eventstore.Metadata{Source: "projections test"})
	if err != nil {
		s.t.Fatal(err)
	}
	recorded, err := eventstore.Append(ctx, s.db, eventstore.Stream{ID: id, Type: eventstore.SubscriptionStream}, sub.Version, enc)
	if err != nil {
		s.t.Fatalf("append to %s: %v", id, err)
	}
	return recorded, nil
}

// must is exec for a command the domain must accept.
func (s *store) must(id uuid.UUID, cmd domain.Command) []eventstore.Event {
	s.t.Helper()
	events, err := s.exec(id, cmd)
	if err != nil {
		s.t.Fatalf("%T on %s refused: %v", cmd, id, err)
	}
	return events
}

func plan(t testing.TB, id string) domain.Plan {
	t.Helper()
	p, err := domain.DefaultCatalog().Plan(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func intPtr(n int) *int { return &n }

// create starts a subscription without a trial unless trialDays says otherwise.
func (s *store) create(customer, planID string, seats int64, trialDays int) uuid.UUID {
	s.t.Helper()
	id := uuid.Must(uuid.NewV7())
	s.must(id, domain.Create{SubscriptionID: id.String(), CustomerID: customer, Plan: plan(s.t, planID), Seats: seats, TrialDays: intPtr(trialDays)})
	return id
}

// randomWorkload runs n random commands over a growing set of subscriptions, moving the fake
// time forward, and skips the commands the domain refuses. It returns the subscriptions.
func (s *store) randomWorkload(rng *rand.Rand, n int, subs []uuid.UUID) []uuid.UUID {
	s.t.Helper()
	plans := domain.DefaultCatalog().Plans()
	canceled := map[uuid.UUID]bool{}
	for range n {
		s.now = s.now.Add(time.Duration(rng.IntN(10*3600)) * time.Second)
		var alive []uuid.UUID
		for _, id := range subs {
			if !canceled[id] {
				alive = append(alive, id)
			}
		}
		if len(alive) == 0 || rng.IntN(5) == 0 {
			id := uuid.Must(uuid.NewV7())
			trial := intPtr(0)
			switch rng.IntN(6) {
			case 0:
				trial = nil // the plan's default
			case 1:
				trial = intPtr(rng.IntN(20) + 1)
			}
			p := plans[rng.IntN(len(plans))]
			customer := "cus_" + string(rune('a'+rng.IntN(12)))
			if _, err := s.exec(id, domain.Create{SubscriptionID: id.String(), CustomerID: customer, Plan: p,
				Seats: int64(rng.IntN(10) + 1), TrialDays: trial}); err == nil {
				subs = append(subs, id)
			}
			continue
		}
		id := alive[rng.IntN(len(alive))]
		cmd := testenv.RandomChange(rng, plans)
		if _, err := s.exec(id, cmd); err == nil && cmd == (domain.Cancel{}) {
			canceled[id] = true
		}
	}
	return subs
}

// foldedModel is the read model computed independently of the projector from the events: the
// fold of each subscription stream and the MRR movements by this test's own rules.
type foldedModel struct {
	subs      map[uuid.UUID]domain.Subscription
	movements map[uuid.UUID]movementRow // by event id
}

type movementRow struct {
	SubscriptionID uuid.UUID `json:"subscription_id"`
	Version        int64     `json:"version"`
	CustomerID     string    `json:"customer_id"`
	PlanID         string    `json:"plan_id"`
	Currency       string    `json:"currency"`
	OccurredAt     time.Time `json:"occurred_at"`
	Kind           string    `json:"kind"`
	Amount         int64     `json:"amount"`
	MRRBefore      int64     `json:"mrr_before"`
	MRRAfter       int64     `json:"mrr_after"`
}

func foldEvents(t testing.TB, events []eventstore.Event) foldedModel {
	t.Helper()
	byStream := map[uuid.UUID][]eventstore.Event{}
	for _, e := range events {
		if e.StreamType == eventstore.SubscriptionStream {
			byStream[e.StreamID] = append(byStream[e.StreamID], e)
		}
	}
	m := foldedModel{subs: map[uuid.UUID]domain.Subscription{}, movements: map[uuid.UUID]movementRow{}}
	for id, stream := range byStream {
		slices.SortFunc(stream, func(a, b eventstore.Event) int { return int(a.Version - b.Version) })
		var s domain.Subscription
		everPaid := false
		for _, e := range stream {
			de, err := eventstore.DecodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			before := s.MRR()
			s = domain.Evolve(s, de)
			after := s.MRR()
			var kind string
			switch {
			case before == after:
			case after == 0:
				kind = "churn"
			case before == 0 && everPaid:
				kind = "reactivation"
			case before == 0:
				kind = "new"
			case after > before:
				kind = "expansion"
			default:
				kind = "contraction"
			}
			if kind != "" {
				m.movements[e.ID] = movementRow{SubscriptionID: id, Version: e.Version, CustomerID: s.CustomerID,
					PlanID: s.Plan.PlanID, Currency: s.Plan.Currency, OccurredAt: e.OccurredAt, Kind: kind,
					Amount: after - before, MRRBefore: before, MRRAfter: after}
			}
			everPaid = everPaid || after > 0
		}
		m.subs[id] = s
	}
	return m
}

// viewStates reads every subscription_view row's state.
func viewStates(t testing.TB, db *pgxpool.Pool) map[uuid.UUID]domain.Subscription {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT id, state FROM subscription_view`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]domain.Subscription{}
	var id uuid.UUID
	var state []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &state}, func() error {
		s, err := projections.DecodeState(state)
		out[id] = s
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func movementRows(t testing.TB, db *pgxpool.Pool) map[uuid.UUID]movementRow {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT event_id, to_jsonb(m) - 'event_id' FROM mrr_movements m`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]movementRow{}
	var id uuid.UUID
	var raw []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
		var m movementRow
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		err := dec.Decode(&m)
		m.OccurredAt = m.OccurredAt.UTC()
		out[id] = m
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkReadModel compares the read model in the database with an independent fold of the log.
func checkReadModel(t testing.TB, db *pgxpool.Pool) {
	t.Helper()
	want := foldEvents(t, testenv.WholeLog(t, db))
	got := viewStates(t, db)
	if len(got) != len(want.subs) {
		t.Errorf("subscription_view has %d rows, the log %d subscriptions", len(got), len(want.subs))
	}
	for id, w := range want.subs {
		if g, ok := got[id]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("subscription %s:\nview %+v\nfold %+v", id, g, w)
		}
	}
	gotM := movementRows(t, db)
	if len(gotM) != len(want.movements) {
		t.Errorf("mrr_movements has %d rows, the fold %d", len(gotM), len(want.movements))
	}
	for id, w := range want.movements {
		if g, ok := gotM[id]; !ok || g != w {
			t.Errorf("movement of event %s:\n got %+v\nwant %+v", id, g, w)
		}
	}
}

// snapshot renders both tables, to compare them before and after something that must not
// change them.
func snapshot(t testing.TB, db *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := db.QueryRow(context.Background(), `SELECT
		coalesce((SELECT jsonb_agg(to_jsonb(v) ORDER BY id)::text FROM subscription_view v), '') ||
		coalesce((SELECT jsonb_agg(to_jsonb(m) ORDER BY event_id)::text FROM mrr_movements m), '')`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSubscriptionViewMatchesAggregate: after projecting a random workload, every view row
// holds exactly the state eventstore.LoadSubscription folds, its columns say the same, and
// delivering every event again (through Apply, or straight to the projector) changes nothing.
func TestSubscriptionViewMatchesAggregate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	subs := s.randomWorkload(rand.New(rand.NewPCG(1, 2)), 250, nil)
	p := projections.NewSubscriptions()
	events := testenv.WholeLog(t, s.db)
	projectionstest.ApplyAll(t, s.db, p, events)

	got := viewStates(t, s.db)
	if len(got) != len(subs) {
		t.Fatalf("view has %d rows, want %d", len(got), len(subs))
	}
	for _, id := range subs {
		want, _, err := eventstore.LoadSubscription(ctx, s.db, id, eventstore.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[id], want) {
			t.Errorf("view state of %s:\n got %+v\nwant %+v", id, got[id], want)
		}
		checkColumns(t, s.db, want)
	}
	checkReadModel(t, s.db)

	before := snapshot(t, s.db)
	for _, e := range events {
		applied, err := projections.Apply(ctx, s.db, p, e, -1)
		if err != nil || applied {
			t.Fatalf("redelivered %s v%d: applied %t, %v; want a no-op", e.Type, e.Version, applied, err)
		}
	}
	// The projector is idempotent on its own too, without the progress table in front.
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		for _, e := range events {
			if err := p.Apply(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, s.db); after != before {
		t.Errorf("redelivery changed the read model:\nbefore %s\nafter  %s", before, after)
	}
}

// checkColumns compares a row's columns with the state they are derived from.
func checkColumns(t testing.TB, db *pgxpool.Pool, s domain.Subscription) {
	t.Helper()
	var row struct {
		customer, plan, status, currency, interval string
		seats, unit, mrr, version                  int64
		features                                   []string
		periodStart, periodEnd, created, updated   time.Time
		trialEnd, canceledAt, pausedAt             *time.Time
		cancelAtEnd, hadMRR                        bool
		scheduled                                  *projections.ScheduledChangeJSON
	}
	err := db.QueryRow(context.Background(), `SELECT customer_id, plan_id, status, currency, "interval", seats,
		unit_amount, mrr, version, features, current_period_start, current_period_end, created_at, updated_at,
		trial_end, canceled_at, paused_at, cancel_at_period_end, had_mrr, scheduled_change
		FROM subscription_view WHERE id = $1`, s.ID).Scan(&row.customer, &row.plan, &row.status, &row.currency,
		&row.interval, &row.seats, &row.unit, &row.mrr, &row.version, &row.features, &row.periodStart, &row.periodEnd,
		&row.created, &row.updated, &row.trialEnd, &row.canceledAt, &row.pausedAt, &row.cancelAtEnd, &row.hadMRR, &row.scheduled)
	if err != nil {
		t.Fatal(err)
	}
	optEq := func(p *time.Time, v time.Time) bool { return (p == nil && v.IsZero()) || (p != nil && p.Equal(v)) }
	ok := row.customer == s.CustomerID && row.plan == s.Plan.PlanID && row.status == string(s.Status) &&
		row.currency == s.Plan.Currency && row.interval == string(s.Plan.Interval) && row.seats == s.Seats &&
		row.unit == s.Plan.UnitAmount && row.mrr == s.MRR() && row.version == s.Version &&
		slices.Equal(row.features, s.Plan.Features) && row.periodStart.Equal(s.PeriodStart) &&
		row.periodEnd.Equal(s.PeriodEnd) && row.created.Equal(s.CreatedAt) && row.updated.Equal(s.UpdatedAt) &&
		optEq(row.trialEnd, s.TrialEnd) && optEq(row.canceledAt, s.CanceledAt) && optEq(row.pausedAt, s.PausedAt) &&
		row.cancelAtEnd == s.CancelAtPeriodEnd
	if c := s.ScheduledChange; c == nil {
		ok = ok && row.scheduled == nil
	} else {
		ok = ok && row.scheduled != nil && row.scheduled.PlanID == c.Plan.PlanID && row.scheduled.Seats == c.Seats &&
			row.scheduled.UnitAmount == c.Plan.UnitAmount && row.scheduled.EffectiveAt.Equal(c.EffectiveAt)
	}
	if !ok {
		t.Errorf("columns of %s = %+v, state %+v", s.ID, row, s)
	}
}

type step struct {
	after time.Duration // fake time moves this far before the command
	cmd   func(t testing.TB) domain.Command
}

type wantMovement struct {
	kind                  projections.MovementKind
	amount, before, after int64
}

// TestMRRMovements: the movement each kind of change records, from real commands.
func TestMRRMovements(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	p := projections.NewSubscriptions()
	seats := func(n int64) func(testing.TB) domain.Command {
		return func(testing.TB) domain.Command { return domain.ChangeSeats{Seats: n} }
	}
	changePlan := func(id string, timing domain.Timing) func(testing.TB) domain.Command {
		return func(t testing.TB) domain.Command { return domain.ChangePlan{Plan: plan(t, id), Timing: timing} }
	}
	do := func(c domain.Command) func(testing.TB) domain.Command {
		return func(testing.TB) domain.Command { return c }
	}
	hour := time.Hour

	tests := []struct {
		name      string
		plan      string
		seats     int64
		trialDays int
		steps     []step
		want      []wantMovement
	}{
		{"create without trial is new", "pro_monthly", 2, 0, nil,
			[]wantMovement{{projections.MovementNew, 9800, 0, 9800}}},
		{"more seats is expansion", "starter_monthly", 1, 0, []step{{hour, seats(3)}},
			[]wantMovement{{projections.MovementNew, 1500, 0, 1500}, {projections.MovementExpansion, 3000, 1500, 4500}}},
		{"fewer seats is contraction", "starter_monthly", 3, 0, []step{{hour, seats(1)}},
			[]wantMovement{{projections.MovementNew, 4500, 0, 4500}, {projections.MovementContraction, -3000, 4500, 1500}}},
		{"upgrade is expansion", "pro_monthly", 1, 0, []step{{hour, changePlan("business_monthly", domain.TimingDefault)}},
			[]wantMovement{{projections.MovementNew, 4900, 0, 4900}, {projections.MovementExpansion, 5000, 4900, 9900}}},
		{"immediate downgrade is contraction", "business_monthly", 2, 0, []step{{hour, changePlan("pro_monthly", domain.TimingImmediate)}},
			[]wantMovement{{projections.MovementNew, 19800, 0, 19800}, {projections.MovementContraction, -10000, 19800, 9800}}},
		{"scheduled downgrade is no movement yet", "business_monthly", 1, 0, []step{{hour, changePlan("starter_monthly", domain.TimingDefault)}},
			[]wantMovement{{projections.MovementNew, 9900, 0, 9900}}},
		{"pause is churn, resume reactivation", "pro_monthly", 1, 0, []step{{hour, do(domain.Pause{})}, {24 * hour, do(domain.Resume{})}},
			[]wantMovement{{projections.MovementNew, 4900, 0, 4900}, {projections.MovementChurn, -4900, 4900, 0},
				{projections.MovementReactivation, 4900, 0, 4900}}},
		{"cancel is churn", "starter_monthly", 2, 0, []step{{hour, do(domain.Cancel{})}},
			[]wantMovement{{projections.MovementNew, 3000, 0, 3000}, {projections.MovementChurn, -3000, 3000, 0}}},
		{"canceling a paused subscription is no movement", "pro_monthly", 1, 0, []step{{hour, do(domain.Pause{})}, {hour, do(domain.Cancel{})}},
			[]wantMovement{{projections.MovementNew, 4900, 0, 4900}, {projections.MovementChurn, -4900, 4900, 0}}},
		{"cancel at period end and undo are no movements", "pro_monthly", 1, 0,
			[]step{{hour, do(domain.Cancel{AtPeriodEnd: true})}, {hour, do(domain.UndoCancel{})}},
			[]wantMovement{{projections.MovementNew, 4900, 0, 4900}}},
		{"a trial has no MRR", "pro_monthly", 2, 14,
			[]step{{hour, seats(5)}, {hour, changePlan("business_monthly", domain.TimingDefault)}, {hour, do(domain.Cancel{})}}, nil},
		{"yearly plans count a twelfth", "pro_yearly", 1, 0, []step{{hour, seats(3)}},
			[]wantMovement{{projections.MovementNew, 4083, 0, 4083}, {projections.MovementExpansion, 12250 - 4083, 4083, 12250}}},
		{"monthly to yearly at a lower monthly amount", "pro_monthly", 1, 0, []step{{hour, changePlan("pro_yearly", domain.TimingImmediate)}},
			[]wantMovement{{projections.MovementNew, 4900, 0, 4900}, {projections.MovementContraction, 4083 - 4900, 4900, 4083}}},
		{"euro subscription", "pro_monthly_eur", 2, 0, nil,
			[]wantMovement{{projections.MovementNew, 9000, 0, 9000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Subtests share the store and its clock, so they run one after another.
			customer := "cus_" + strings.ReplaceAll(tt.name, " ", "_")[:10]
			id := s.create(customer, tt.plan, tt.seats, tt.trialDays)
			for _, st := range tt.steps {
				s.now = s.now.Add(st.after)
				s.must(id, st.cmd(t))
			}
			events, err := eventstore.Load(context.Background(), s.db, id, eventstore.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			projectionstest.ApplyAll(t, s.db, p, events)
			sub, _, _ := eventstore.LoadSubscription(context.Background(), s.db, id, eventstore.LoadOptions{})

			rows, err := s.db.Query(context.Background(), `SELECT event_id, to_jsonb(m) - 'event_id' FROM mrr_movements m
				WHERE subscription_id = $1 ORDER BY version`, id)
			if err != nil {
				t.Fatal(err)
			}
			var got []movementRow
			var eventIDs []uuid.UUID
			var eventID uuid.UUID
			var raw []byte
			if _, err := pgx.ForEachRow(rows, []any{&eventID, &raw}, func() error {
				var m movementRow
				eventIDs = append(eventIDs, eventID)
				err := json.Unmarshal(raw, &m)
				got = append(got, m)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("movements = %+v, want %+v", got, tt.want)
			}
			byID := map[uuid.UUID]eventstore.Event{}
			for _, e := range events {
				byID[e.ID] = e
			}
			for i, w := range tt.want {
				g, e := got[i], byID[eventIDs[i]]
				if g.Kind != string(w.kind) || g.Amount != w.amount || g.MRRBefore != w.before || g.MRRAfter != w.after {
					t.Errorf("movement %d = %s %d (%d → %d), want %s %d (%d → %d)", i, g.Kind, g.Amount, g.MRRBefore, g.MRRAfter,
						w.kind, w.amount, w.before, w.after)
				}
				if e.ID == uuid.Nil || g.Version != e.Version || !g.OccurredAt.Equal(e.OccurredAt) || g.SubscriptionID != id ||
					g.CustomerID != customer || g.Currency != sub.Plan.Currency {
					t.Errorf("movement %d = %+v does not describe event %+v of %s", i, g, e, id)
				}
			}
		})
	}
}

// TestProjectorRefusesGapsAndSkipsOtherStreams: an event ahead of its predecessor is refused with
// ErrOutOfOrder and changes nothing (through Apply, and by the projector on its own); events of
// other stream types are not the projector's.
func TestProjectorRefusesGapsAndSkipsOtherStreams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	p := projections.NewSubscriptions()
	id := s.create("cus_gap", "starter_monthly", 1, 0)
	s.now = s.now.Add(time.Hour)
	s.must(id, domain.ChangeSeats{Seats: 2})
	s.now = s.now.Add(time.Hour)
	s.must(id, domain.ChangeSeats{Seats: 3})
	events, err := eventstore.Load(ctx, s.db, id, eventstore.LoadOptions{})
	if err != nil || len(events) != 3 {
		t.Fatalf("events = %v, %v", events, err)
	}

	if _, err := projections.Apply(ctx, s.db, p, events[1], -1); !errors.Is(err, projections.ErrOutOfOrder) {
		t.Errorf("Apply of version 2 first: %v, want ErrOutOfOrder", err)
	}
	if _, err := projections.Apply(ctx, s.db, p, events[0], -1); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return p.Apply(ctx, tx, events[2]) })
	if !errors.Is(err, projections.ErrOutOfOrder) {
		t.Errorf("projector given version 3 on a row at version 1: %v, want ErrOutOfOrder", err)
	}
	if got := viewStates(t, s.db)[id]; got.Version != 1 || got.Seats != 1 {
		t.Errorf("after refused events the row is %+v, want version 1", got)
	}
	projectionstest.ApplyAll(t, s.db, p, events[1:])
	if got := viewStates(t, s.db)[id]; got.Version != 3 || got.Seats != 3 {
		t.Errorf("after every event the row is %+v, want version 3 with 3 seats", got)
	}

	other := eventstore.Stream{ID: uuid.Must(uuid.NewV7()), Type: "invoice"}
	recorded, err := eventstore.Append(ctx, s.db, other, 0, []eventstore.NewEvent{{Type: "invoice.created", SchemaVersion: 1,
		Data: json.RawMessage(`{"total": 100}`), OccurredAt: s.now}})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s.db)
	if _, err := projections.Apply(ctx, s.db, p, recorded[0], -1); err != nil {
		t.Fatalf("apply an invoice event: %v", err)
	}
	if after := snapshot(t, s.db); after != before {
		t.Errorf("an invoice event changed the subscriptions read model")
	}
}
