package projections_test

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
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

// billingCycle moves every subscription through the billing cycle's commands at random:
// renewals up to now (converting trials), failed payments (past_due), and dunning ending in
// unpaid, cancellation or recovery. Commands the domain refuses are skipped.
func (s *store) billingCycle(rng *rand.Rand, subs []uuid.UUID) {
	s.t.Helper()
	ctx := context.Background()
	s.now = s.now.Add(40 * 24 * time.Hour)
	for _, id := range subs {
		for range 24 { // renew until the current period is open
			sub, _, err := eventstore.LoadSubscription(ctx, s.db, id, eventstore.LoadOptions{})
			if err != nil {
				s.t.Fatal(err)
			}
			if _, err := s.exec(id, domain.Renew{PeriodEnd: sub.PeriodEnd, InvoiceID: uuid.Must(uuid.NewV7()).String()}); err != nil {
				break
			}
		}
		invoice := uuid.Must(uuid.NewV7()).String()
		if rng.IntN(2) == 0 {
			continue
		}
		if _, err := s.exec(id, domain.MarkPastDue{InvoiceID: invoice}); err != nil {
			continue
		}
		switch rng.IntN(4) {
		case 0:
			s.exec(id, domain.EndDunning{InvoiceID: invoice, MarkUnpaid: true})
		case 1:
			s.exec(id, domain.EndDunning{InvoiceID: invoice})
		case 2:
			s.exec(id, domain.RecoverPayment{InvoiceID: invoice})
		}
	}
}

// wantEntitlements is CustomerEntitlements computed from folded subscriptions: the union of the
// plan features of the customer's active and trialing subscriptions.
func wantEntitlements(customer string, subs map[uuid.UUID]domain.Subscription) projections.CustomerFeatures {
	want := projections.CustomerFeatures{CustomerID: customer, Features: []string{}, Subscriptions: []projections.SubscriptionFeatures{}}
	var ids []uuid.UUID
	for id, s := range subs {
		if s.CustomerID == customer && (s.Status == domain.StatusActive || s.Status == domain.StatusTrialing) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	seen := map[string]bool{}
	for _, id := range ids {
		s := subs[id]
		want.Subscriptions = append(want.Subscriptions, projections.SubscriptionFeatures{SubscriptionID: id,
			PlanID: s.Plan.PlanID, Status: s.Status, Features: s.Plan.Features, Version: s.Version})
		for _, f := range s.Plan.Features {
			if !seen[f] {
				seen[f] = true
				want.Features = append(want.Features, f)
			}
		}
	}
	slices.Sort(want.Features)
	return want
}

// entitlementSnapshot renders the table, to compare it before and after something that must
// not change it.
func entitlementSnapshot(t testing.TB, db *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := db.QueryRow(context.Background(), `SELECT coalesce((SELECT jsonb_agg(to_jsonb(e) ORDER BY subscription_id)::text
		FROM subscription_entitlements e), '')`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkEntitlements compares every row with eventstore.LoadSubscription and every customer's
// entitlements with the union computed from the fold.
func checkEntitlements(t testing.TB, db *pgxpool.Pool, subs []uuid.UUID) map[uuid.UUID]domain.Subscription {
	t.Helper()
	ctx := context.Background()
	folded := map[uuid.UUID]domain.Subscription{}
	customers := map[string]bool{}
	for _, id := range subs {
		s, _, err := eventstore.LoadSubscription(ctx, db, id, eventstore.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		folded[id] = s
		customers[s.CustomerID] = true
	}
	rows, err := db.Query(ctx, `SELECT subscription_id, customer_id, plan_id, status, features, version, updated_at, state
		FROM subscription_entitlements`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var id uuid.UUID
	var customer, plan, status string
	var features []string
	var version int64
	var updated time.Time
	var state []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &customer, &plan, &status, &features, &version, &updated, &state}, func() error {
		n++
		want, ok := folded[id]
		got, err := projections.DecodeState(state)
		if err != nil {
			return err
		}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("entitlement row %s:\nstate %+v\n fold %+v", id, got, want)
		}
		if customer != want.CustomerID || plan != want.Plan.PlanID || status != string(want.Status) ||
			!slices.Equal(features, want.Plan.Features) || version != want.Version || !updated.Equal(want.UpdatedAt) {
			t.Errorf("entitlement row %s columns: %s %s %s %v v%d %s; fold %+v", id, customer, plan, status, features, version, updated, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(folded) {
		t.Errorf("subscription_entitlements has %d rows, the store %d subscriptions", n, len(folded))
	}
	customers["cus_nobody"] = true
	for c := range customers {
		got, err := projections.CustomerEntitlements(ctx, db, c)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantEntitlements(c, folded); !reflect.DeepEqual(got, want) {
			t.Errorf("entitlements of %s:\n got %+v\nwant %+v", c, got, want)
		}
	}
	return folded
}

// TestEntitlementsMatchAggregate: after projecting random subscription histories that go
// through the billing cycle, every row holds the subscription eventstore.LoadSubscription folds,
// every customer's entitlements are the union of their active and trialing subscriptions'
// features, EntitlementsVisible answers by version, redelivery changes nothing and a rebuild
// gives the same table.
func TestEntitlementsMatchAggregate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	rng := rand.New(rand.NewPCG(21, 22))
	subs := s.randomWorkload(rng, 150, nil)
	s.billingCycle(rng, subs)
	subs = s.randomWorkload(rng, 60, subs) // new trials, and changes after the renewals
	p := projections.NewEntitlements()
	events := testenv.WholeLog(t, s.db)
	projectionstest.ApplyAll(t, s.db, p, events)
	folded := checkEntitlements(t, s.db, subs)

	// The histories must reach every status, and some customer must hold overlapping features
	// from two subscriptions, or the test proves less than it says.
	statuses := map[domain.Status]int{}
	granting := map[string]int{}
	for _, sub := range folded {
		statuses[sub.Status]++
		if sub.Status == domain.StatusActive || sub.Status == domain.StatusTrialing {
			granting[sub.CustomerID]++
		}
	}
	for _, st := range []domain.Status{domain.StatusActive, domain.StatusTrialing, domain.StatusPastDue, domain.StatusPaused,
		domain.StatusUnpaid, domain.StatusCanceled} {
		if statuses[st] == 0 {
			t.Errorf("no subscription ends %s: %v", st, statuses)
		}
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(granting)), func(n int) bool { return n > 1 }) {
		t.Errorf("no customer has two granting subscriptions: %v", granting)
	}

	for id, sub := range folded {
		for v, want := range map[int64]bool{1: true, sub.Version: true, sub.Version + 1: false} {
			if got, err := projections.EntitlementsVisible(ctx, s.db, id, v); err != nil || got != want {
				t.Errorf("EntitlementsVisible(%s, %d) = %t, %v; the row is at %d", id, v, got, err, sub.Version)
			}
		}
	}
	if got, err := projections.EntitlementsVisible(ctx, s.db, uuid.Must(uuid.NewV7()), 1); err != nil || got {
		t.Errorf("EntitlementsVisible of an unknown subscription = %t, %v", got, err)
	}

	redeliverChangesNothing(t, s.db, p, events, entitlementSnapshot)
	rebuildRestores(t, s.db, p, entitlementSnapshot,
		`UPDATE subscription_entitlements SET features = '{}', status = 'canceled'`)
	checkEntitlements(t, s.db, subs)
}

// TestEntitlementsFollowAnUpgrade: what the upgrade saga sees. Until the projector has folded
// the plan change, EntitlementsVisible at the change's version is false and the customer has the
// old plan's features; once it has, it is true and they have the new plan's. Losing access
// (past due) and getting it back follow the same way; events of other streams change nothing.
func TestEntitlementsFollowAnUpgrade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	p := projections.NewEntitlements()
	starter := s.create("cus_up", "starter_monthly", 1, 0)
	other := s.create("cus_up", "pro_monthly", 1, 14) // trialing: grants too
	projectionstest.ApplyAll(t, s.db, p, testenv.WholeLog(t, s.db))

	features := func() []string {
		t.Helper()
		got, err := projections.CustomerEntitlements(ctx, s.db, "cus_up")
		if err != nil {
			t.Fatal(err)
		}
		return got.Features
	}
	visible := func(id uuid.UUID, v int64) bool {
		t.Helper()
		ok, err := projections.EntitlementsVisible(ctx, s.db, id, v)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	pro := []string{"api_access", "audit_log", "email_support", "priority_support"}
	if got := features(); !slices.Equal(got, pro) {
		t.Errorf("starter and a pro trial grant %v, want %v", got, pro)
	}

	// Cancel the trial: only the starter features remain.
	s.now = s.now.Add(time.Hour)
	cancel := s.must(other, domain.Cancel{})
	s.now = s.now.Add(time.Hour)
	changed := s.must(starter, domain.ChangePlan{Plan: plan(t, "business_monthly"), Timing: domain.TimingImmediate})
	if len(changed) != 1 || changed[0].Version != 2 {
		t.Fatalf("plan change = %+v", changed)
	}
	projectionstest.ApplyAll(t, s.db, p, cancel)
	if got := features(); !slices.Equal(got, []string{"api_access", "email_support"}) {
		t.Errorf("after the trial's cancellation, before the upgrade is folded: %v", got)
	}
	if visible(starter, 2) || !visible(starter, 1) {
		t.Errorf("EntitlementsVisible before the change is folded: v1 %t, v2 %t", visible(starter, 1), visible(starter, 2))
	}
	projectionstest.ApplyAll(t, s.db, p, changed)
	if !visible(starter, 2) {
		t.Errorf("EntitlementsVisible(v2) is false after the change was folded")
	}
	business := []string{"api_access", "audit_log", "email_support", "priority_support", "sso"}
	if got := features(); !slices.Equal(got, business) {
		t.Errorf("after the upgrade: %v, want %v", got, business)
	}

	// Past due grants nothing; recovering gives it back.
	s.now = s.now.Add(time.Hour)
	projectionstest.ApplyAll(t, s.db, p, s.must(starter, domain.MarkPastDue{InvoiceID: "inv"}))
	if got := features(); len(got) != 0 {
		t.Errorf("past due: %v, want none", got)
	}
	s.now = s.now.Add(time.Hour)
	projectionstest.ApplyAll(t, s.db, p, s.must(starter, domain.RecoverPayment{InvoiceID: "inv"}))
	if got := features(); !slices.Equal(got, business) {
		t.Errorf("recovered: %v, want %v", got, business)
	}

	// Gaps are refused, other streams skipped.
	before := entitlementSnapshot(t, s.db)
	s.now = s.now.Add(time.Hour)
	s.must(starter, domain.ChangeSeats{Seats: 2})
	s.now = s.now.Add(time.Hour)
	ahead := s.must(starter, domain.ChangeSeats{Seats: 3})
	if _, err := projections.Apply(ctx, s.db, p, ahead[0], -1); !errors.Is(err, projections.ErrOutOfOrder) {
		t.Errorf("Apply of a version ahead: %v, want ErrOutOfOrder", err)
	}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return p.Apply(ctx, tx, ahead[0]) })
	if !errors.Is(err, projections.ErrOutOfOrder) {
		t.Errorf("projector given a version ahead: %v, want ErrOutOfOrder", err)
	}
	sub, _, _ := eventstore.LoadSubscription(ctx, s.db, starter, eventstore.LoadOptions{})
	invoice := testenv.IssueInvoice(t, s.db, domain.InvoiceRequest{SubscriptionID: starter.String(), CustomerID: "cus_up",
		Currency: "USD", Reason: domain.InvoiceForCycle, Lines: []domain.InvoiceLine{testenv.PeriodLine(sub)},
		PeriodStart: sub.PeriodStart, PeriodEnd: sub.PeriodEnd}, s.now)
	var others []eventstore.Event
	for _, e := range testenv.WholeLog(t, s.db) {
		if e.StreamID == invoice || e.StreamType == eventstore.CustomerStream {
			others = append(others, e)
		}
	}
	if len(others) != 2 {
		t.Fatalf("invoice and customer events = %d, want 2", len(others))
	}
	projectionstest.ApplyAll(t, s.db, p, others)
	if after := entitlementSnapshot(t, s.db); after != before {
		t.Errorf("refused and foreign events changed the table:\nbefore %s\nafter  %s", before, after)
	}
	projectionstest.ApplyAll(t, s.db, p, testenv.WholeLog(t, s.db))
	checkEntitlements(t, s.db, []uuid.UUID{starter, other})
}
