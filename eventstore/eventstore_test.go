package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

var t0 = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

func newEvents(n int, typ string) []eventstore.NewEvent {
	events := make([]eventstore.NewEvent, n)
	for i := range events {
		events[i] = eventstore.NewEvent{
			Type: typ, SchemaVersion: 1,
			Data:       json.RawMessage(fmt.Sprintf(`{"n": %d}`, i)),
			Metadata:   eventstore.Metadata{CorrelationID: "corr-1", Actor: "test"},
			OccurredAt: t0.Add(time.Duration(i) * time.Hour),
		}
	}
	return events
}

func newStream() eventstore.Stream {
	return eventstore.Stream{ID: uuid.New(), Type: "subscription"}
}

func TestAppendAndLoad(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	s := newStream()

	recorded, err := eventstore.Append(ctx, db, s, 0, newEvents(3, "thing.happened"))
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	for i, e := range recorded {
		if e.Version != int64(i+1) {
			t.Errorf("recorded[%d].Version = %d, want %d", i, e.Version, i+1)
		}
		if e.ID == uuid.Nil || e.Position.GlobalPosition == 0 || e.Position.TransactionID == 0 || e.RecordedAt.IsZero() {
			t.Errorf("recorded[%d] lacks store-assigned fields: %+v", i, e)
		}
	}
	if recorded[0].Position.TransactionID != recorded[2].Position.TransactionID {
		t.Errorf("a batch was split across transactions: %v vs %v", recorded[0].Position, recorded[2].Position)
	}

	loaded, err := eventstore.Load(ctx, db, s.ID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(loaded) != 3 {
		t.Fatalf("loaded %d events, want 3", len(loaded))
	}
	for i, got := range loaded {
		want := recorded[i]
		if got.ID != want.ID || got.Version != want.Version || got.Position != want.Position ||
			got.Type != want.Type || !got.OccurredAt.Equal(want.OccurredAt) || got.Metadata != want.Metadata ||
			got.StreamType != "subscription" {
			t.Errorf("loaded[%d] = %+v, want %+v", i, got, want)
		}
		var data struct{ N int }
		if err := json.Unmarshal(got.Data, &data); err != nil || data.N != i {
			t.Errorf("loaded[%d].Data = %s, want n=%d", i, got.Data, i)
		}
	}
}

func TestLoadBounds(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	s := newStream()
	if _, err := eventstore.Append(ctx, db, s, 0, newEvents(5, "thing.happened")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts eventstore.LoadOptions
		want []int64
	}{
		{"all", eventstore.LoadOptions{}, []int64{1, 2, 3, 4, 5}},
		{"up to version 2", eventstore.LoadOptions{UpToVersion: 2}, []int64{1, 2}},
		{"after version 3", eventstore.LoadOptions{AfterVersion: 3}, []int64{4, 5}},
		{"until exactly the third event's time (inclusive)", eventstore.LoadOptions{Until: t0.Add(2 * time.Hour)}, []int64{1, 2, 3}},
		{"until between events", eventstore.LoadOptions{Until: t0.Add(90 * time.Minute)}, []int64{1, 2}},
		{"until before the first", eventstore.LoadOptions{Until: t0.Add(-time.Second)}, nil},
	}
	for _, tt := range tests {
		events, err := eventstore.Load(ctx, db, s.ID, tt.opts)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []int64
		for _, e := range events {
			got = append(got, e.Version)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: got versions %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAppendWrongExpectedVersion(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	s := newStream()
	first, err := eventstore.Append(ctx, db, s, 0, newEvents(2, "thing.happened"))
	if err != nil {
		t.Fatal(err)
	}

	for _, expected := range []int64{0, 1, 3} {
		_, err := eventstore.Append(ctx, db, s, expected, newEvents(1, "thing.happened"))
		var conflict *eventstore.ConcurrencyError
		if !errors.As(err, &conflict) || !errors.Is(err, eventstore.ErrConcurrency) {
			t.Fatalf("append at expected %d: err = %v, want a *ConcurrencyError", expected, err)
		}
		if conflict.Expected != expected || conflict.Actual != 2 || conflict.StreamID != s.ID {
			t.Errorf("conflict = %+v, want expected %d actual 2", conflict, expected)
		}
	}

	// The refused appends were checked before any identity value was taken: the next event's
	// global position follows the last one directly.
	next, err := eventstore.Append(ctx, db, s, 2, newEvents(1, "thing.happened"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := next[0].Position.GlobalPosition, first[1].Position.GlobalPosition+1; got != want {
		t.Errorf("global position after refused appends = %d, want %d (a refused append consumed a sequence value)", got, want)
	}
}

func TestAppendDuplicateEventID(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	events := newEvents(1, "thing.happened")
	events[0].ID = uuid.New()
	if _, err := eventstore.Append(ctx, db, newStream(), 0, events); err != nil {
		t.Fatal(err)
	}
	_, err := eventstore.Append(ctx, db, newStream(), 0, events)
	if !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("err = %v, want ErrDuplicateEvent", err)
	}
}

// TestConcurrentAppendersOneWinnerPerVersion: N writers read the same version and race; exactly
// one wins, the others get the typed conflict (never a raw unique violation), and the stream has
// no gap and no duplicate version.
func TestConcurrentAppendersOneWinnerPerVersion(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	s := newStream()
	if _, err := eventstore.Append(ctx, db, s, 0, newEvents(1, "thing.happened")); err != nil {
		t.Fatal(err)
	}
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := make(chan struct{})
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := eventstore.Append(ctx, db, s, 1, newEvents(2, "thing.happened"))
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, eventstore.ErrConcurrency):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d writers won, want exactly 1", wins)
	}
	events, err := eventstore.Load(ctx, db, s.ID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Fatalf("version %d at index %d: gap or duplicate", e.Version, i)
		}
	}
	if len(events) != 3 {
		t.Errorf("stream has %d events, want 3", len(events))
	}
}

// TestHistoryIsImmutable: the database itself refuses to change history, whoever asks.
func TestHistoryIsImmutable(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	s := newStream()
	if _, err := eventstore.Append(ctx, db, s, 0, newEvents(1, "thing.happened")); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`UPDATE events SET data = '{"n": 99}'`,
		`UPDATE events SET type = 'forged' WHERE version = 1`,
		`DELETE FROM events`,
		`TRUNCATE events`,
	} {
		_, err := db.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23001" {
			t.Errorf("%s: err = %v, want restrict_violation (23001)", stmt, err)
		}
	}
	events, err := eventstore.Load(ctx, db, s.ID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || string(events[0].Data) != `{"n": 0}` || events[0].Type != "thing.happened" {
		t.Errorf("history changed: %+v", events)
	}
}
