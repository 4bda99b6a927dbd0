package projections_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/internal/backlog"
	"github.com/billing-oss/billing/projections"
)

var projectionEvents = flag.Int("projection-events", 50_000, "backlog size of BenchmarkProjectionThroughput")

// consumerBatch is what one consumer transaction holds at most: BatchSize (default 100) entries
// from each of the 8 partitions.
const consumerBatch = 100 * 8

// BenchmarkProjectionThroughput measures how fast the read models absorb a backlog from Redis:
// a realistic backlog (internal/backlog) is appended and published by the relay, then the
// consumers of every registered projector start, as billingd starts them, and the time runs
// until every projector's partition checkpoints have reached the head of their partition.
// events/s is the backlog over that time (each event goes through every projector).
//
// The baseline, in the same run and on the same database: one writer per projector, each
// inserting as many rows of a read-model-like shape (a subscription_view-like row with the
// folded state as jsonb) into a bare table of its own, consumerBatch rows per multi-row INSERT
// and transaction, concurrently: what writing one row per event per read model costs when
// nothing is read, checked or folded. ratio is events/s ÷ bare-events/s.
//
//	go test -run '^$' -bench ProjectionThroughput -count 3 ./projections/ -projection-events 50000
func BenchmarkProjectionThroughput(b *testing.B) {
	ctx := context.Background()
	db, rdb, blocking, streams := benchPipeline(b)
	quiet := slog.New(slog.DiscardHandler)
	n := *projectionEvents

	// The groups exist before the relay publishes, at the start of each partition, as billingd's
	// consumers leave them: the backlog then waits in Redis rather than being caught up from the
	// store (which is what a consumer does for a group that is missing).
	if err := resetGroups(ctx, rdb, streams); err != nil {
		b.Fatal(err)
	}
	heads, err := seedBacklog(ctx, db, streams, n)
	if err != nil {
		b.Fatal(err)
	}
	if err := publish(ctx, db, rdb, streams, n, quiet); err != nil {
		b.Fatal(err)
	}
	state, err := sampleState()
	if err != nil {
		b.Fatal(err)
	}

	var rate, bareRate float64
	for b.Loop() {
		b.StopTimer()
		if err := resetReadModels(ctx, db, rdb, streams); err != nil {
			b.Fatal(err)
		}
		bare, err := bareReadModelInsert(ctx, db, n, len(projections.Projectors()), state)
		if err != nil {
			b.Fatal(err)
		}
		bareRate = float64(n) / bare.Seconds()
		b.StartTimer()

		start := time.Now()
		runCtx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var consumers []*projections.Consumer
		for _, p := range projections.Projectors() {
			c, err := projections.NewConsumer(projections.ConsumerConfig{DB: db, Redis: rdb, Blocking: blocking,
				Streams: streams, Projector: p, ConsumerName: "bench", Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			consumers = append(consumers, c)
			wg.Go(func() { c.Run(runCtx) })
		}
		err = waitForHeads(ctx, db, heads, 10*time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range consumers {
			// What is measured is the path from Redis: a catch-up from the store would mean
			// the groups were not where the backlog was.
			if st := c.Stats(); st.CaughtUp > 0 || st.Applied == 0 {
				b.Fatalf("a consumer applied %d events from Redis and caught %d up from the store; want all from Redis", st.Applied, st.CaughtUp)
			}
		}
		rate = float64(n) / elapsed.Seconds()
		b.StartTimer()
	}
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(bareRate, "bare-events/s")
	b.ReportMetric(rate/bareRate, "ratio")
}

// seedBacklog appends n events of the backlog and returns, per projector and partition, the
// position each checkpoint has to reach: the partition's last event.
func seedBacklog(ctx context.Context, db *pgxpool.Pool, streams projections.Streams, n int) (map[int]int64, error) {
	g := backlog.New(1, time.Now().AddDate(-1, 0, 0))
	for left := n; left > 0; left -= 1000 {
		batch, err := g.Batch(min(left, 1000))
		if err != nil {
			return nil, err
		}
		if _, err := eventstore.AppendMany(ctx, db, batch); err != nil {
			return nil, err
		}
	}
	rows, err := db.Query(ctx, `SELECT stream_id, max(global_position) FROM events GROUP BY stream_id`)
	if err != nil {
		return nil, err
	}
	heads := map[int]int64{}
	var id uuid.UUID
	var pos int64
	_, err = pgx.ForEachRow(rows, []any{&id, &pos}, func() error {
		p := streams.Partition(id)
		heads[p] = max(heads[p], pos)
		return nil
	})
	return heads, err
}

// publish runs the relay until it has published n events, then stops it: the consumers then
// measure alone.
func publish(ctx context.Context, db *pgxpool.Pool, rdb *redis.Client, streams projections.Streams, n int, log *slog.Logger) error {
	ctx, stop := context.WithCancel(ctx)
	r := relay.New(relay.Config{DB: db, Redis: rdb, Streams: streams, Logger: log, PollInterval: 50 * time.Millisecond})
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { stop(); <-done }()
	for deadline := time.Now().Add(5 * time.Minute); r.Published() < int64(n); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the relay published %d of %d events in 5 minutes", r.Published(), n)
		}
	}
	return nil
}

// resetGroups (re)creates every projector's group on every partition at its start.
func resetGroups(ctx context.Context, rdb *redis.Client, streams projections.Streams) error {
	for _, p := range projections.Projectors() {
		for part := range streams.Partitions {
			key := streams.Key(part)
			rdb.XGroupDestroy(ctx, key, p.Name())
			if err := rdb.XGroupCreateMkStream(ctx, key, p.Name(), "0").Err(); err != nil {
				return fmt.Errorf("create group %s on %s: %w", p.Name(), key, err)
			}
		}
	}
	return nil
}

// resetReadModels empties every read model and its progress, and has the groups deliver the
// whole backlog again.
func resetReadModels(ctx context.Context, db *pgxpool.Pool, rdb *redis.Client, streams projections.Streams) error {
	var tables, names []string
	for _, p := range projections.Projectors() {
		names = append(names, p.Name())
		if r, ok := p.(projections.Rebuildable); ok {
			for _, t := range r.Tables() {
				tables = append(tables, pgx.Identifier{t}.Sanitize())
			}
		}
	}
	if _, err := db.Exec(ctx, `TRUNCATE `+strings.Join(tables, ", ")); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `DELETE FROM projection_versions WHERE projector = ANY($1)`, names); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `DELETE FROM projection_checkpoints WHERE projector = ANY($1)`, names); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `VACUUM (ANALYZE)`); err != nil {
		return err
	}
	return resetGroups(ctx, rdb, streams)
}

// waitForHeads waits until every projector's checkpoint of every partition is at its head.
func waitForHeads(ctx context.Context, db *pgxpool.Pool, heads map[int]int64, timeout time.Duration) error {
	names := map[string]bool{}
	for _, p := range projections.Projectors() {
		names[p.Name()] = true
	}
	deadline := time.Now().Add(timeout)
	for {
		rows, err := db.Query(ctx, `SELECT projector, partition, global_position FROM projection_checkpoints`)
		if err != nil {
			return err
		}
		reached := 0
		var name string
		var part int
		var pos int64
		_, err = pgx.ForEachRow(rows, []any{&name, &part, &pos}, func() error {
			if names[name] && heads[part] > 0 && pos >= heads[part] {
				reached++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if reached == len(names)*len(heads) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, %d of %d checkpoints are at their partition's head", timeout, reached, len(names)*len(heads))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sampleState is the state column of a subscription with a few months of history: what a
// read-model row carries.
func sampleState() (json.RawMessage, error) {
	appends, err := backlog.New(2, time.Now().AddDate(-1, 0, 0)).Customer()
	if err != nil {
		return nil, err
	}
	var events []domain.Event
	for _, e := range appends[0].Events { // the subscription's stream comes first
		de, err := domain.DecodeEvent(e.Type, e.Data)
		if err != nil {
			return nil, err
		}
		events = append(events, de)
	}
	return json.Marshal(domain.Fold(events))
}

// bareReadModelInsert has writers concurrent writers each insert n rows into a bare table of
// its own, consumerBatch rows per multi-row INSERT, and returns how long until all are done.
func bareReadModelInsert(ctx context.Context, db *pgxpool.Pool, n, writers int, state json.RawMessage) (time.Duration, error) {
	const columns = 9
	insert := func(table string, rows int) string {
		var sql strings.Builder
		fmt.Fprintf(&sql, `INSERT INTO %s (id, customer_id, plan_id, status, seats, mrr, version, updated_at, state) VALUES `, table)
		for i := range rows {
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(")
			for c := range columns {
				if c > 0 {
					sql.WriteString(", ")
				}
				fmt.Fprintf(&sql, "$%d", columns*i+c+1)
			}
			sql.WriteString(")")
		}
		return sql.String()
	}
	for w := range writers {
		table := fmt.Sprintf("bench_bare_view_%d", w)
		if _, err := db.Exec(ctx, `DROP TABLE IF EXISTS `+table); err != nil {
			return 0, err
		}
		if _, err := db.Exec(ctx, `CREATE TABLE `+table+` (id uuid PRIMARY KEY, customer_id text NOT NULL,
			plan_id text NOT NULL, status text NOT NULL, seats bigint NOT NULL, mrr bigint NOT NULL,
			version bigint NOT NULL, updated_at timestamptz NOT NULL, state jsonb NOT NULL)`); err != nil {
			return 0, err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			table := fmt.Sprintf("bench_bare_view_%d", w)
			full := insert(table, consumerBatch)
			args := make([]any, 0, columns*consumerBatch)
			for left := n; left > 0; left -= consumerBatch {
				rows := min(left, consumerBatch)
				sql := full
				if rows < consumerBatch {
					sql = insert(table, rows)
				}
				args = args[:0]
				for range rows {
					args = append(args, uuid.New(), "cus_bench", "pro_monthly", "active", 3, 14700, 7, time.Now(), state)
				}
				if _, err := db.Exec(ctx, sql, args...); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for w := range writers {
		db.Exec(ctx, fmt.Sprintf(`DROP TABLE IF EXISTS bench_bare_view_%d`, w))
	}
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return elapsed, nil
}
