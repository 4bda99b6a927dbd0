package eventstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

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

// TestAppendKeepsEachStreamInLogOrder: a transaction that took its id (by writing elsewhere)
// before another transaction appended version 1 of a stream must not append version 2: the
// global log is ordered by transaction id first, so version 2 would come before version 1 and
// the relay would publish the stream out of order (the upgrade saga did this: its abort voids
// the invoice, then records subscription.upgrade_failed). It is a concurrency conflict, and the
// retry in a new transaction keeps the order. Both Append and AppendMany.
func TestAppendKeepsEachStreamInLogOrder(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	appendOne := map[string]func(q eventstore.Querier, s eventstore.Stream, expected int64) error{
		"Append": func(q eventstore.Querier, s eventstore.Stream, expected int64) error {
			_, err := eventstore.Append(ctx, q, s, expected, newEvents(1, "thing.happened"))
			return err
		},
		"AppendMany": func(q eventstore.Querier, s eventstore.Stream, expected int64) error {
			_, err := eventstore.AppendMany(ctx, q, []eventstore.StreamAppend{{Stream: s, Expected: expected, Events: newEvents(1, "thing.happened")}})
			return err
		},
	}
	for name, appendTo := range appendOne {
		t.Run(name, func(t *testing.T) {
			s := newStream()
			older, err := db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer older.Rollback(ctx)
			if err := appendTo(older, newStream(), 0); err != nil { // takes its transaction id
				t.Fatal(err)
			}
			if err := appendTo(db, s, 0); err != nil { // a younger transaction writes version 1
				t.Fatal(err)
			}
			err = appendTo(older, s, 1)
			if err == nil {
				err = older.Commit(ctx)
			} else if errors.Is(err, eventstore.ErrConcurrency) {
				older.Rollback(ctx)
				err = appendTo(db, s, 1) // the retry, in a new transaction
			}
			if err != nil {
				t.Fatal(err)
			}
			rows, err := db.Query(ctx, `SELECT version FROM events WHERE stream_id = $1 ORDER BY transaction_id, global_position`, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			if len(versions) != 2 || versions[0] != 1 || versions[1] != 2 {
				t.Errorf("the global log orders the stream's versions %v, want [1 2]", versions)
			}
		})
	}
}
