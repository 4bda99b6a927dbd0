package eventstore_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

// TestReadAllWaitsForSlowTransaction reproduces the hazard the reader exists for: a slow
// transaction takes a lower position than a fast one that commits first. A reader by position
// alone would return the fast event, checkpoint past the slow one, and skip it forever.
func TestReadAllWaitsForSlowTransaction(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)

	slow, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx)
	slowEvents, err := eventstore.Append(ctx, slow, newStream(), 0, newEvents(1, "slow"))
	if err != nil {
		t.Fatal(err)
	}
	fastEvents, err := eventstore.Append(ctx, db, newStream(), 0, newEvents(1, "fast"))
	if err != nil {
		t.Fatal(err)
	}
	if fastEvents[0].Position.GlobalPosition < slowEvents[0].Position.GlobalPosition {
		t.Fatalf("setup: fast position %d should be above slow %d", fastEvents[0].Position.GlobalPosition, slowEvents[0].Position.GlobalPosition)
	}

	// By position alone, the committed fast event is visible past the slow one's position.
	var naive int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM events WHERE global_position > 0`).Scan(&naive); err != nil {
		t.Fatal(err)
	}
	if naive != 1 {
		t.Fatalf("setup: a position reader sees %d events, want 1 (the fast one)", naive)
	}

	got, err := eventstore.ReadAll(ctx, db, eventstore.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("ReadAll returned %d events while an older transaction is open, want 0: %+v", len(got), got)
	}

	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Other tests' transactions in the same cluster may hold the horizon back for a moment.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, err = eventstore.ReadAll(ctx, db, eventstore.Position{}, 100); err != nil || len(got) == 2 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != "slow" || got[1].Type != "fast" {
		t.Fatalf("after commit ReadAll = %v, want [slow fast]", types(got))
	}
}

// TestReadAllTailsConcurrentAppendersGapFree: many writers append concurrently, some in slow
// transactions and some that roll back, while a reader tails the log from its checkpoint. The
// reader must see every committed event exactly once, none of the rolled-back ones, in an order
// that a later full read reproduces exactly.
func TestReadAllTailsConcurrentAppendersGapFree(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	const writers, appendsPerWriter = 16, 40

	var committed sync.Map // event id -> struct{}
	var committedCount atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			s := newStream()
			version := int64(0)
			for range appendsPerWriter {
				batch := newEvents(1+rng.IntN(3), "tail.test")
				tx, err := db.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				recorded, err := eventstore.Append(ctx, tx, s, version, batch)
				if err != nil {
					t.Error(err)
					tx.Rollback(ctx)
					return
				}
				// Hold some transactions open so later ones commit first.
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
				if rng.IntN(10) == 0 {
					tx.Rollback(ctx)
					continue
				}
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
				version += int64(len(recorded))
				for _, e := range recorded {
					committed.Store(e.ID, struct{}{})
				}
				committedCount.Add(int64(len(recorded)))
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	var seen []eventstore.Event
	seenIDs := map[uuid.UUID]bool{}
	checkpoint := eventstore.Position{}
	tail := func() int {
		batch, err := eventstore.ReadAll(ctx, db, checkpoint, 7) // small pages exercise the cursor
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range batch {
			if !checkpoint.Before(e.Position) {
				t.Fatalf("event at %v returned after checkpoint %v: order went backwards", e.Position, checkpoint)
			}
			if seenIDs[e.ID] {
				t.Fatalf("event %s returned twice", e.ID)
			}
			seenIDs[e.ID] = true
			seen = append(seen, e)
			checkpoint = e.Position
		}
		return len(batch)
	}
	for done := false; !done; {
		select {
		case <-writersDone:
			done = true
		default:
			if tail() == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	// Writers are done, but a transaction anywhere else in the cluster (another test's, say) can
	// still hold the visibility horizon back: drain until everything committed has arrived.
	for deadline := time.Now().Add(30 * time.Second); int64(len(seen)) < committedCount.Load() && time.Now().Before(deadline); {
		if tail() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}

	if int64(len(seen)) != committedCount.Load() {
		t.Errorf("reader saw %d events, writers committed %d", len(seen), committedCount.Load())
	}
	for _, e := range seen {
		if _, ok := committed.Load(e.ID); !ok {
			t.Errorf("reader saw event %s that was never committed (rolled back?)", e.ID)
		}
	}
	committed.Range(func(id, _ any) bool {
		if !seenIDs[id.(uuid.UUID)] {
			t.Errorf("committed event %s was skipped by the tailing reader", id)
		}
		return true
	})

	// A fresh reader from the start sees the same sequence.
	all, err := eventstore.ReadAll(ctx, db, eventstore.Position{}, len(seen)+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(seen) {
		t.Fatalf("full read returned %d events, tail saw %d", len(all), len(seen))
	}
	for i := range all {
		if all[i].ID != seen[i].ID {
			t.Fatalf("order differs at %d: full read %s, tail %s", i, all[i].ID, seen[i].ID)
		}
	}
}

func types(events []eventstore.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

// TestReadAllFollowsTheIndex: the reader must walk events_transaction_position_idx in order, not
// sort the log after its cursor, or every read costs a scan of the whole log. With sorting and
// sequential scans priced out, a query the index can serve has neither in its plan.
func TestReadAllFollowsTheIndex(t *testing.T) {
	ctx, db := context.Background(), testenv.Postgres(t)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, set := range []string{`SET LOCAL enable_sort = off`, `SET LOCAL enable_seqscan = off`} {
		if _, err := tx.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, `EXPLAIN `+eventstore.ReadAllSQL, int64(0), int64(0), 1000)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if strings.Contains(plan, "Sort") || !strings.Contains(plan, "events_transaction_position_idx") {
		t.Errorf("ReadAll's plan sorts or misses the index:\n%s", plan)
	}
}
