package eventstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

func TestAppendMany(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	old, fresh1, fresh2 := newStream(), newStream(), newStream()
	if _, err := eventstore.Append(ctx, db, old, 0, newEvents(2, "thing.happened")); err != nil {
		t.Fatal(err)
	}

	recorded, err := eventstore.AppendMany(ctx, db, []eventstore.StreamAppend{
		{Stream: fresh1, Expected: 0, Events: newEvents(1, "thing.happened")},
		{Stream: old, Expected: 2, Events: newEvents(2, "thing.happened")},
		{Stream: fresh2, Expected: 0, Events: newEvents(1, "thing.happened")},
	})
	if err != nil {
		t.Fatalf("append many: %v", err)
	}
	type sv struct {
		stream  string
		version int64
	}
	want := []sv{{fresh1.ID.String(), 1}, {old.ID.String(), 3}, {old.ID.String(), 4}, {fresh2.ID.String(), 1}}
	if len(recorded) != len(want) {
		t.Fatalf("recorded %d events, want %d", len(recorded), len(want))
	}
	for i, e := range recorded {
		if got := (sv{e.StreamID.String(), e.Version}); got != want[i] {
			t.Errorf("recorded[%d] = %v, want %v", i, got, want[i])
		}
		if e.Position.TransactionID != recorded[0].Position.TransactionID {
			t.Errorf("recorded[%d] in transaction %d, want all in %d", i, e.Position.TransactionID, recorded[0].Position.TransactionID)
		}
		if i > 0 && e.Position.GlobalPosition <= recorded[i-1].Position.GlobalPosition {
			t.Errorf("recorded[%d] at position %d, not after %d: the order given was not kept", i, e.Position.GlobalPosition, recorded[i-1].Position.GlobalPosition)
		}
	}
	loaded, err := eventstore.Load(ctx, db, old.ID, eventstore.LoadOptions{})
	if err != nil || len(loaded) != 4 {
		t.Fatalf("old stream has %d events (%v), want 4", len(loaded), err)
	}
}

// TestAppendManyStaleStream: one stream behind its expected version refuses the whole append,
// naming that stream; the other streams get nothing.
func TestAppendManyStaleStream(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	old, fresh := newStream(), newStream()
	if _, err := eventstore.Append(ctx, db, old, 0, newEvents(2, "thing.happened")); err != nil {
		t.Fatal(err)
	}
	for _, expected := range []int64{1, 3} {
		_, err := eventstore.AppendMany(ctx, db, []eventstore.StreamAppend{
			{Stream: fresh, Expected: 0, Events: newEvents(1, "thing.happened")},
			{Stream: old, Expected: expected, Events: newEvents(1, "thing.happened")},
		})
		var conflict *eventstore.ConcurrencyError
		if !errors.As(err, &conflict) || conflict.StreamID != old.ID || conflict.Expected != expected || conflict.Actual != 2 {
			t.Fatalf("expected %d: err = %v, want a *ConcurrencyError on %s (expected %d, actual 2)", expected, err, old.ID, expected)
		}
	}
	if v, err := eventstore.StreamVersion(ctx, db, fresh.ID); err != nil || v != 0 {
		t.Errorf("fresh stream at version %d (%v) after refused appends, want 0", v, err)
	}
	_, err := eventstore.AppendMany(ctx, db, []eventstore.StreamAppend{
		{Stream: fresh, Expected: 0, Events: newEvents(1, "thing.happened")},
		{Stream: fresh, Expected: 1, Events: newEvents(1, "thing.happened")},
	})
	if err == nil || errors.Is(err, eventstore.ErrConcurrency) {
		t.Errorf("a stream given twice: err = %v, want a plain error", err)
	}
}

// TestAppendManyRace: writers that all pass the version check race on the unique index; one
// wins and the others get a *ConcurrencyError naming the contested stream, never a raw
// unique violation, and never half of their events.
func TestAppendManyRace(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	shared := newStream()
	const writers = 10
	var wg sync.WaitGroup
	errs := make([]error, writers)
	own := make([]eventstore.Stream, writers)
	start := make(chan struct{})
	for i := range writers {
		own[i] = newStream()
		wg.Go(func() {
			<-start
			_, errs[i] = eventstore.AppendMany(ctx, db, []eventstore.StreamAppend{
				{Stream: own[i], Expected: 0, Events: newEvents(1, "thing.happened")},
				{Stream: shared, Expected: 0, Events: newEvents(1, "thing.happened")},
			})
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		var conflict *eventstore.ConcurrencyError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &conflict) && conflict.StreamID == shared.ID:
			if v, err := eventstore.StreamVersion(ctx, db, own[i].ID); err != nil || v != 0 {
				t.Errorf("a losing writer's own stream is at version %d (%v), want 0", v, err)
			}
		default:
			t.Errorf("writer %d: %v, want success or a *ConcurrencyError on the shared stream", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d writers won, want 1", wins)
	}
}
