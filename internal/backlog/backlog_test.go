package backlog_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/backlog"
)

// TestBatch checks what the benchmarks rely on: a batch has exactly the events asked for, no
// stream twice (AppendMany refuses that), histories the domain folds without surprise, and
// work for every read model.
func TestBatch(t *testing.T) {
	const n = 5000
	g := backlog.New(1, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	appends, err := g.Batch(n)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	seen := map[uuid.UUID]bool{}
	types := map[string]int{}
	for _, a := range appends {
		if seen[a.Stream.ID] {
			t.Fatalf("stream %s appears twice in one batch", a.Stream.ID)
		}
		seen[a.Stream.ID] = true
		if a.Expected != 0 || len(a.Events) == 0 {
			t.Fatalf("stream %s: expected version %d with %d events, want 0 and some", a.Stream.ID, a.Expected, len(a.Events))
		}
		var events []domain.Event
		for _, e := range a.Events {
			types[e.Type]++
			if got := domain.StreamTypeOf(e.Type); got != a.Stream.Type {
				t.Fatalf("event %s on a %s stream, want a %s stream", e.Type, a.Stream.Type, got)
			}
			de, err := domain.DecodeEvent(e.Type, e.Data)
			if err != nil {
				t.Fatalf("decode %s: %v", e.Type, err)
			}
			events = append(events, de)
		}
		total += len(a.Events)
		if a.Stream.Type == eventstore.SubscriptionStream {
			if s := domain.Fold(events); s.Version != int64(len(events)) || s.ID != a.Stream.ID.String() {
				t.Fatalf("subscription %s folds to version %d, id %q; want %d, itself", a.Stream.ID, s.Version, s.ID, len(events))
			}
		}
	}
	if total != n {
		t.Errorf("got %d events, want %d", total, n)
	}
	for _, want := range []string{"subscription.created", "subscription.seats_changed", "subscription.plan_changed",
		"subscription.plan_change_scheduled", "subscription.renewed", "subscription.past_due", "subscription.canceled",
		"customer.invoice_issued", "invoice.created", "invoice.payment_succeeded", "invoice.payment_failed",
		"upgrade.started", "upgrade.completed"} {
		if types[want] == 0 {
			t.Errorf("no %s among %d events: %v", want, total, types)
		}
	}
}
