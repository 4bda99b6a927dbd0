package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

// benchHistory appends a subscription with n events: a Create, then ChangeSeats alternating 2
// and 3 seats, decided one second apart on a fake clock and appended in batches. With every > 0
// it stores a snapshot at every multiple of `every` except the last, leaving the latest snapshot
// `every` events or more behind the head: the worst case a command's load meets (a command saves
// one as soon as `every` events would be folded).
func benchHistory(b *testing.B, ctx context.Context, db *pgxpool.Pool, n, every int) uuid.UUID {
	b.Helper()
	id := uuid.New()
	stream := eventstore.Stream{ID: id, Type: eventstore.SubscriptionStream}
	plan, err := domain.DefaultCatalog().Plan("pro_monthly")
	if err != nil {
		b.Fatal(err)
	}
	trial := 0
	now := t0
	var sub domain.Subscription
	var batch []domain.Event
	flush := func() {
		encoded, err := eventstore.EncodeEvents(batch, eventstore.Metadata{Actor: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := eventstore.Append(ctx, db, stream, sub.Version-int64(len(batch)), encoded); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	lastSnapshot := max(0, (n-every)/max(every, 1)*every) // the last multiple of every at least every behind n
	for i := range n {
		var c domain.Command = domain.ChangeSeats{Seats: int64(2 + i%2)}
		if i == 0 {
			c = domain.Create{SubscriptionID: id.String(), CustomerID: "cus_bench", Plan: plan, Seats: 1, TrialDays: &trial}
		}
		events, err := domain.Decide(sub, c, now)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range events {
			sub = domain.Evolve(sub, e)
		}
		batch = append(batch, events...)
		now = now.Add(time.Second)
		snapshotDue := every > 0 && sub.Version%int64(every) == 0 && sub.Version <= int64(lastSnapshot)
		if len(batch) >= 2000 || snapshotDue || i == n-1 {
			flush()
		}
		if snapshotDue {
			if _, err := eventstore.SaveSubscriptionSnapshot(ctx, db, id, sub); err != nil {
				b.Fatal(err)
			}
		}
	}
	return id
}

// BenchmarkLoadSubscription compares loading a subscription for a command with 10 and 10,000
// events, by full replay (LoadSubscription) and from a snapshot (LoadSubscriptionWithSnapshot),
// with the latest snapshot as far behind the head as the snapshot frequency allows (the worst
// case). Its last sub-benchmark reports ratio (at the default frequency,
// eventstore.DefaultSnapshotEvery = 10; target ≤ 2) and ratio_every100: ns/op of the
// 10,000-event load from a snapshot divided by ns/op of the 10-event load. The cost is that of
// the events after the snapshot, not of the history.
func BenchmarkLoadSubscription(b *testing.B) {
	ctx, db := context.Background(), testenv.Postgres(b)
	every := eventstore.DefaultSnapshotEvery
	short, long := benchHistory(b, ctx, db, 10, every), benchHistory(b, ctx, db, 10_000, every)
	long100 := benchHistory(b, ctx, db, 10_000, 100) // SNAPSHOT_EVERY=100, for comparison
	for _, table := range []string{"events", "snapshots"} {
		if _, err := db.Exec(ctx, `VACUUM ANALYZE `+table); err != nil {
			b.Fatal(err)
		}
	}

	full := func(id uuid.UUID) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				if _, _, err := eventstore.LoadSubscription(ctx, db, id, eventstore.LoadOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	snap := func(id uuid.UUID, nsPerOp *float64) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				if _, _, err := eventstore.LoadSubscriptionWithSnapshot(ctx, db, id); err != nil {
					b.Fatal(err)
				}
			}
			*nsPerOp = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		}
	}
	var shortNs, longNs, long100Ns float64
	b.Run("events=10/snapshots=no", full(short))
	b.Run("events=10000/snapshots=no", full(long))
	b.Run("events=10/snapshots=yes", snap(short, &shortNs))
	b.Run("events=10000/snapshots=yes", snap(long, &longNs))
	b.Run("events=10000/snapshots=every100", snap(long100, &long100Ns))
	b.Run("ratio=10000vs10/snapshots=yes", func(b *testing.B) {
		for b.Loop() {
		}
		if shortNs > 0 {
			b.ReportMetric(longNs/shortNs, "ratio")
			b.ReportMetric(long100Ns/shortNs, "ratio_every100")
		}
	})
}
