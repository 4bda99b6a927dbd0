package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// TestConcurrentWritersOnOneSubscription: writers race on one subscription. Every command
// acknowledged with 200 is in the history exactly once, refused ones (409 after the retries)
// left nothing, the history has no version gap, and the final state is the fold of it.
func TestConcurrentWritersOnOneSubscription(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("pro_monthly", 1)
	const writers = 24
	var wg sync.WaitGroup
	statuses := make([]int, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := api.do("POST", "/v1/subscriptions/"+s.ID+"/seats", fmt.Sprintf(`{"seats": %d}`, i+2),
				withHeader("Idempotency-Key", fmt.Sprintf("seats-%d", i)))
			statuses[i] = r.status
		}()
	}
	wg.Wait()

	ctx := context.Background()
	sub, events, err := eventstore.LoadSubscription(ctx, api.db, uuid.MustParse(s.ID), eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	for i, status := range statuses {
		switch status {
		case http.StatusOK:
			acked[fmt.Sprintf("seats-%d", i)] = true
		case http.StatusConflict:
		default:
			t.Errorf("writer %d: status %d", i, status)
		}
	}
	inHistory := map[string]int{}
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Fatalf("version %d at index %d: gap or duplicate", e.Version, i)
		}
		// Seat increases cost money, so each runs an upgrade saga; a saga that lost the race
		// to another writer is refunded and recorded as subscription.upgrade_failed (and the
		// request answered 409): only seats_changed events are effects of acknowledged writes.
		if e.Type == "subscription.seats_changed" {
			inHistory[e.Metadata.IdempotencyKey]++
		}
	}
	for key := range acked {
		if inHistory[key] != 1 {
			t.Errorf("acknowledged command %s is in the history %d times", key, inHistory[key])
		}
	}
	for key, n := range inHistory {
		if !acked[key] || n != 1 {
			t.Errorf("history holds %s %d times but it was not acknowledged once", key, n)
		}
	}
	if len(acked) == 0 {
		t.Error("no writer succeeded")
	}
	var latest domain.SeatsChanged
	for _, e := range events {
		if de, err := eventstore.DecodeEvent(e); err != nil {
			t.Fatal(err)
		} else if c, ok := de.(domain.SeatsChanged); ok {
			latest = c
		}
	}
	if sub.Seats != latest.Seats || sub.Version != int64(len(events)) {
		t.Errorf("final state %d seats v%d does not match the last event", sub.Seats, sub.Version)
	}
	var got subscription
	api.must(http.StatusOK, "GET", "/v1/subscriptions/"+s.ID, nil).decode(t, &got)
	if got.Seats != sub.Seats || got.Version != sub.Version {
		t.Errorf("GET = %d seats v%d, fold = %d seats v%d", got.Seats, got.Version, sub.Seats, sub.Version)
	}
}
