// Package projectionstest helps tests feed events to projectors as the consumers would.
package projectionstest

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// ApplyAll applies events to p through projections.Apply, as a consumer does. An event that
// the log order puts before its stream's predecessor (a transaction that took its id early and
// appended late) is retried after the others; the test fails if some never apply.
func ApplyAll(t testing.TB, db *pgxpool.Pool, p projections.Projector, events []eventstore.Event) {
	t.Helper()
	for len(events) > 0 {
		var later []eventstore.Event
		for _, e := range events {
			_, err := projections.Apply(context.Background(), db, p, e, -1)
			switch {
			case errors.Is(err, projections.ErrOutOfOrder):
				later = append(later, e)
			case err != nil:
				t.Fatalf("%s: apply %s v%d: %v", p.Name(), e.Type, e.Version, err)
			}
		}
		if len(later) == len(events) {
			t.Fatalf("%s: %d events never became applicable", p.Name(), len(later))
		}
		events = later
	}
}
