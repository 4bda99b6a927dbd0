package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/eventstore"
)

// WholeLog reads the whole event log through the gap-free reader, waiting until it shows every
// committed event: a transaction of another test anywhere in the cluster can hold the reader's
// visibility horizon back for a moment (see eventstore.ReadAll).
func WholeLog(t testing.TB, db *pgxpool.Pool) []eventstore.Event {
	t.Helper()
	ctx := context.Background()
	var want int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		events, err := eventstore.ReadAll(ctx, db, eventstore.Position{}, want+1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) >= want {
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gap-free reader shows %d of %d committed events", len(events), want)
		}
	}
}
