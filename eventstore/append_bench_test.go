package eventstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

// bareTable has the events table's row shape and indexes, and none of the event store's
// behaviour (no expected-version check, no transaction id, no triggers): the baseline an append
// is compared with.
const bareTable = `CREATE TABLE bare_events (
	global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	stream_id uuid NOT NULL, stream_type text NOT NULL, version bigint NOT NULL,
	event_id uuid NOT NULL UNIQUE, type text NOT NULL, schema_version integer NOT NULL,
	data jsonb NOT NULL, metadata jsonb NOT NULL, occurred_at timestamptz NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (stream_id, version))`

var benchData = json.RawMessage(`{"from_seats": 2, "seats": 3, "changed_at": "2026-03-14T09:00:00Z", "proration": []}`)

// BenchmarkAppend compares eventstore.Append with a plain INSERT of the same rows into a bare
// table, at 1, 8 and 32 concurrent writers, one event per transaction, and in batches of 100
// events per transaction. Each writer appends to its own streams. ns/op is per event; the
// ratio sub-benchmarks report append throughput / bare throughput (target ≥ 0.8 at 32 writers).
func BenchmarkAppend(b *testing.B) {
	ctx, db := context.Background(), testenv.Postgres(b)
	if _, err := db.Exec(ctx, bareTable); err != nil {
		b.Fatal(err)
	}
	meta := eventstore.Metadata{CorrelationID: "bench", Actor: "bench", Source: "bench"}
	newEvents := func(n int) []eventstore.NewEvent {
		events := make([]eventstore.NewEvent, n)
		for i := range events {
			events[i] = eventstore.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "subscription.seats_changed",
				SchemaVersion: 1, Data: benchData, Metadata: meta, OccurredAt: time.Now()}
		}
		return events
	}
	appendStore := func(ctx context.Context, db *pgxpool.Pool, s eventstore.Stream, version int64, n int) error {
		_, err := eventstore.Append(ctx, db, s, version, newEvents(n))
		return err
	}
	appendBare := func(ctx context.Context, db *pgxpool.Pool, s eventstore.Stream, version int64, n int) error {
		events := newEvents(n)
		rows := make([][]any, n)
		for i, e := range events {
			rows[i] = []any{s.ID, s.Type, version + int64(i) + 1, e.ID, e.Type, e.SchemaVersion, e.Data, e.Metadata, e.OccurredAt}
		}
		// One INSERT of n rows, as an application without an event store would write a batch.
		var sql strings.Builder
		sql.WriteString(`INSERT INTO bare_events (stream_id, stream_type, version, event_id, type, schema_version,
			data, metadata, occurred_at) VALUES `)
		args := make([]any, 0, 9*n)
		for i, r := range rows {
			if i > 0 {
				sql.WriteString(", ")
			}
			fmt.Fprintf(&sql, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)", 9*i+1, 9*i+2, 9*i+3, 9*i+4, 9*i+5, 9*i+6, 9*i+7, 9*i+8, 9*i+9)
			args = append(args, r...)
		}
		_, err := db.Exec(ctx, sql.String(), args...)
		return err
	}

	type result struct{ store, bare float64 } // events per second
	results := map[string]*result{}
	run := func(name string, writers, perTx int, write func(context.Context, *pgxpool.Pool, eventstore.Stream, int64, int) error, out *float64) {
		b.Run(name, func(b *testing.B) {
			var next atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, version := eventstore.Stream{ID: uuid.New(), Type: "subscription"}, int64(0)
					for next.Add(int64(perTx)) <= int64(b.N) {
						if err := write(ctx, db, s, version, perTx); err != nil {
							b.Error(err)
							return
						}
						if version += int64(perTx); version >= 1000 {
							s, version = eventstore.Stream{ID: uuid.New(), Type: "subscription"}, 0
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			*out = float64(b.N) / elapsed.Seconds()
		})
	}
	for _, c := range []struct {
		writers, perTx int
	}{{1, 1}, {8, 1}, {32, 1}, {8, 100}} {
		key := fmt.Sprintf("writers=%d/events_per_tx=%d", c.writers, c.perTx)
		r := &result{}
		results[key] = r
		run("bare/"+key, c.writers, c.perTx, appendBare, &r.bare)
		run("append/"+key, c.writers, c.perTx, appendStore, &r.store)
		b.Run("ratio/"+key, func(b *testing.B) {
			for b.Loop() {
			}
			if r.bare > 0 {
				b.ReportMetric(r.store/r.bare, "append/bare")
			}
		})
	}
}
