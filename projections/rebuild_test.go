package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
	"github.com/billing-oss/billing/projections/projectionstest"
)

// TestRebuildWhileLive: a rebuild runs while commands keep appending events and the live
// projector keeps applying them. After the swap the live tables equal a fresh fold of the log,
// the live projector never failed, its progress is the log's, and nothing of the rebuild is
// left behind. The live tables were damaged before the rebuild, so the equality is the
// rebuild's doing, not the live projector's.
func TestRebuildWhileLive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	p := projections.NewSubscriptions()
	subs := s.randomWorkload(rand.New(rand.NewPCG(7, 7)), 300, nil)
	projectionstest.ApplyAll(t, s.db, p, testenv.WholeLog(t, s.db))
	indexesBefore := indexNames(t, s.db)

	// Damage what the live projector never reads back, so that it keeps working.
	if _, err := s.db.Exec(ctx, `DELETE FROM mrr_movements WHERE kind = 'new'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(ctx, `UPDATE subscription_view SET customer_id = 'damaged', mrr = 0`); err != nil {
		t.Fatal(err)
	}

	// The live side: a writer appends as the API would, and one applier per partition tails the
	// log and applies its partition's events as the consumers would, all without pause.
	const partitions = 4
	var applied atomic.Int64
	var errs liveErrors
	start := lastPosition(t, s.db)
	appliers := make([]*liveProjector, partitions)
	for i := range appliers {
		appliers[i] = &liveProjector{db: s.db, p: p, pos: start, streams: projections.Streams{Partitions: partitions},
			partition: i, applied: &applied, errs: &errs}
	}
	writer := &store{t: &nonFatal{TB: t, failed: &errs.writerFailed}, db: s.db, now: s.now}
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(8, 8))
		for !stopped() {
			subs = writer.randomWorkload(rng, 2, subs)
		}
	})
	for _, l := range appliers {
		wg.Go(func() {
			for !stopped() {
				if l.tail(ctx) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}

	var duringRebuild atomic.Int64
	stats, err := projections.Rebuild(ctx, s.db, p, projections.RebuildOptions{
		BatchSize: 25,
		Progress: func(projections.RebuildProgress) {
			// Make sure the live side gets work done in between the batches.
			before := applied.Load()
			for deadline := time.Now().Add(5 * time.Second); applied.Load() == before && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			duringRebuild.Add(applied.Load() - before)
		},
	})
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	// Keep going for a while against the swapped-in tables.
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	drain(t, ctx, s.db, appliers)

	if err := errs.err(); err != nil {
		t.Fatalf("a live apply failed: %v", err)
	}
	if errs.writerFailed.Load() {
		t.FailNow()
	}
	t.Logf("rebuild: %d events (%d caught up in the swap) over %d streams in %s (%.0f events/s), swap %s; live applied %d during it",
		stats.Events, stats.CaughtUp, stats.Streams, stats.Duration, stats.EventsPerSecond(), stats.Swap, duringRebuild.Load())
	if duringRebuild.Load() == 0 {
		t.Errorf("the live projector applied nothing while the rebuild ran; the test proves nothing")
	}
	if stats.Events == 0 || stats.Streams == 0 {
		t.Errorf("stats = %+v", stats)
	}

	checkReadModel(t, s.db)
	checkProgress(t, s.db)
	if got := indexNames(t, s.db); !slices.Equal(got, indexesBefore) {
		t.Errorf("indexes after the swap:\n%v\nbefore:\n%v", got, indexesBefore)
	}
	var leftovers []string
	rows, _ := s.db.Query(ctx, `SELECT tablename FROM pg_tables WHERE tablename LIKE '%\_next' OR tablename LIKE '%\_old'`)
	leftovers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(leftovers) > 0 {
		t.Errorf("tables left behind: %v, %v", leftovers, err)
	}
}

// liveProjector tails the log and applies one partition's events through projections.Apply,
// as a consumer does.
type liveProjector struct {
	db        *pgxpool.Pool
	p         projections.Projector
	streams   projections.Streams
	partition int
	pos       eventstore.Position
	waiting   []eventstore.Event // out of order in the log: retried after the next read
	applied   *atomic.Int64
	errs      *liveErrors
}

// tail reads the log once and applies what belongs to the partition; it returns how many
// events it read.
func (l *liveProjector) tail(ctx context.Context) int {
	events, err := eventstore.ReadAll(ctx, l.db, l.pos, 100)
	if err != nil {
		l.errs.add(err)
		return 0
	}
	if len(events) > 0 {
		l.pos = events[len(events)-1].Position
	}
	remaining := l.waiting
	for _, e := range events {
		if l.streams.Partition(e.StreamID) == l.partition {
			remaining = append(remaining, e)
		}
	}
	// An event the log puts before its predecessor waits for it; anything else is a failure.
	for {
		var later []eventstore.Event
		for _, e := range remaining {
			_, err := projections.Apply(ctx, l.db, l.p, e, l.partition)
			switch {
			case errors.Is(err, projections.ErrOutOfOrder) && slices.ContainsFunc(remaining, func(o eventstore.Event) bool {
				return o.StreamID == e.StreamID && o.Version < e.Version
			}):
				later = append(later, e)
			case err != nil:
				l.errs.add(fmt.Errorf("partition %d: %w", l.partition, err))
			default:
				l.applied.Add(1)
			}
		}
		if len(later) == 0 || len(later) == len(remaining) {
			l.waiting = later
			return len(events)
		}
		remaining = later
	}
}

// drain tails until the projector's progress has every committed event.
func drain(t testing.TB, ctx context.Context, db *pgxpool.Pool, appliers []*liveProjector) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		read := 0
		for _, l := range appliers {
			read += l.tail(ctx)
		}
		if read > 0 {
			continue
		}
		var behind int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM projection_versions v
			WHERE v.projector = 'subscriptions' AND v.stream_id = e.stream_id AND v.version >= e.version)`).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		if behind == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the live projector did not catch up with the log")
}

type liveErrors struct {
	mu           sync.Mutex
	errs         []error
	writerFailed atomic.Bool
}

func (l *liveErrors) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *liveErrors) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// nonFatal lets a store run in a goroutine: a failure is recorded rather than calling
// FailNow off the test's goroutine.
type nonFatal struct {
	testing.TB
	failed *atomic.Bool
}

func (n *nonFatal) Helper() {}
func (n *nonFatal) Fatalf(format string, args ...any) {
	n.failed.Store(true)
	n.TB.Errorf(format, args...)
	runtime.Goexit()
}
func (n *nonFatal) Fatal(args ...any) {
	n.failed.Store(true)
	n.TB.Error(args...)
	runtime.Goexit()
}

func lastPosition(t testing.TB, db *pgxpool.Pool) eventstore.Position {
	t.Helper()
	events := testenv.WholeLog(t, db)
	return events[len(events)-1].Position
}

// checkProgress: the projector's progress is every stream's version, and the rebuild's is gone.
func checkProgress(t testing.TB, db *pgxpool.Pool) {
	t.Helper()
	var wrong, rebuild int
	err := db.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM (SELECT stream_id, max(version) AS version FROM events GROUP BY stream_id) e
		 FULL JOIN (SELECT * FROM projection_versions WHERE projector = 'subscriptions') v USING (stream_id)
		 WHERE e.version IS DISTINCT FROM v.version),
		(SELECT count(*) FROM projection_versions WHERE projector = 'subscriptions:rebuild')`).Scan(&wrong, &rebuild)
	if err != nil {
		t.Fatal(err)
	}
	if wrong != 0 || rebuild != 0 {
		t.Errorf("progress: %d streams differ from the log, %d rebuild rows left", wrong, rebuild)
	}
}

func indexNames(t testing.TB, db *pgxpool.Pool) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT tablename || ': ' || indexname FROM pg_indexes
		WHERE tablename IN ('subscription_view', 'mrr_movements') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestRebuildOrdersEachStream: the log is in commit order of transaction ids, so a transaction
// that took its id early but appended late puts a stream's version 2 before its version 1. The
// rebuild still applies every stream in version order, in batches of one event.
func TestRebuildOrdersEachStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	id := uuid.Must(uuid.NewV7())

	early, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx)
	if _, err := early.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // take a transaction id now
		t.Fatal(err)
	}
	s.create("cus_order", "pro_monthly", 1, 0) // another subscription, so the log has more to it
	s.must(id, domain.Create{SubscriptionID: id.String(), CustomerID: "cus_order", Plan: plan(t, "pro_monthly"), Seats: 1, TrialDays: intPtr(0)})
	s.now = s.now.Add(time.Hour)
	enc, err := eventstore.EncodeEvents([]domain.Event{domain.SeatsChanged{FromSeats: 1, Seats: 4, ChangedAt: s.now}}, eventstore.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	// A raw INSERT: eventstore.Append now refuses this (an append after a version a younger
	// transaction wrote), but stores written by earlier releases hold such histories.
	if _, err := early.Exec(ctx, `INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
		VALUES ($1, $2, 2, $3, $4, $5, $6, '{}', $7)`, id, eventstore.SubscriptionStream, uuid.New(), enc[0].Type,
		enc[0].SchemaVersion, enc[0].Data, enc[0].OccurredAt); err != nil {
		t.Fatal(err)
	}
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	events := testenv.WholeLog(t, s.db)
	if i := slices.IndexFunc(events, func(e eventstore.Event) bool { return e.StreamID == id }); events[i].Version != 2 {
		t.Fatalf("the log does not put version 2 first: %v", events)
	}

	if _, err := projections.Rebuild(ctx, s.db, projections.NewSubscriptions(), projections.RebuildOptions{BatchSize: 1}); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, s.db)
	checkProgress(t, s.db)
	if got := viewStates(t, s.db)[id]; got.Seats != 4 || got.Version != 2 {
		t.Errorf("rebuilt row = %+v, want version 2 with 4 seats", got)
	}
}

// TestFailedRebuildLeavesLiveModel: a rebuild that fails (here on an event it cannot decode)
// leaves the live tables and progress as they were and cleans up after itself; a rebuild that
// is already running makes another one fail fast.
func TestFailedRebuildLeavesLiveModel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	p := projections.NewSubscriptions()
	s.randomWorkload(rand.New(rand.NewPCG(3, 4)), 60, nil)
	projectionstest.ApplyAll(t, s.db, p, testenv.WholeLog(t, s.db))
	before := snapshot(t, s.db)

	conn, err := s.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended('projection rebuild:subscriptions', 0))`); err != nil {
		t.Fatal(err)
	}
	if _, err := projections.Rebuild(ctx, s.db, p, projections.RebuildOptions{}); !errors.Is(err, projections.ErrRebuildRunning) {
		t.Errorf("rebuild while another runs: %v, want ErrRebuildRunning", err)
	}
	conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
	conn.Release()

	bad := eventstore.Stream{ID: uuid.Must(uuid.NewV7()), Type: eventstore.SubscriptionStream}
	if _, err := eventstore.Append(ctx, s.db, bad, 0, []eventstore.NewEvent{{Type: "subscription.teleported", SchemaVersion: 1,
		Data: json.RawMessage(`{}`), OccurredAt: s.now}}); err != nil {
		t.Fatal(err)
	}
	testenv.WholeLog(t, s.db)
	if _, err := projections.Rebuild(ctx, s.db, p, projections.RebuildOptions{BatchSize: 25}); err == nil {
		t.Fatal("rebuild over an undecodable event succeeded")
	}
	if after := snapshot(t, s.db); after != before {
		t.Errorf("a failed rebuild changed the live read model")
	}
	var leftovers int
	if err := s.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\_next') +
		(SELECT count(*) FROM projection_versions WHERE projector = 'subscriptions:rebuild')`).Scan(&leftovers); err != nil {
		t.Fatal(err)
	}
	if leftovers != 0 {
		t.Errorf("a failed rebuild left %d tables or progress rows behind", leftovers)
	}
}

// TestSwapBlocksTheLiveProjector: an event applied while the swap is under way waits for the
// swap to commit and then lands in the new tables, instead of deadlocking with it or writing to
// tables about to be dropped. The test holds the swap in the middle (after the first table is
// swapped) by keeping a lock on the second table's copy.
func TestSwapBlocksTheLiveProjector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	p := projections.NewSubscriptions()
	id := s.create("cus_swap", "pro_monthly", 1, 0)
	s.create("cus_other", "starter_monthly", 2, 0)
	projectionstest.ApplyAll(t, s.db, p, testenv.WholeLog(t, s.db))

	// Hold an ACCESS SHARE lock on mrr_movements_next as soon as it exists: the rebuild can
	// fill it, but the swap cannot rename it.
	blocker, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	holding := make(chan struct{})
	rebuilt := make(chan error, 1)
	go func() {
		_, err := projections.Rebuild(ctx, s.db, p, projections.RebuildOptions{Progress: func(projections.RebuildProgress) {
			<-holding
		}})
		rebuilt <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var exists bool
		if err := s.db.QueryRow(ctx, `SELECT to_regclass('mrr_movements_next') IS NOT NULL`).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rebuild never created mrr_movements_next")
		}
	}
	if _, err := blocker.Exec(ctx, `LOCK TABLE mrr_movements_next IN ACCESS SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	close(holding)
	waitForLockWait(t, s.db, "mrr_movements_next")

	// The swap is under way. A command appends an event and the live projector applies it.
	s.now = s.now.Add(time.Hour)
	events := s.must(id, domain.ChangeSeats{Seats: 3})
	applied := make(chan error, 1)
	go func() {
		_, err := projections.Apply(ctx, s.db, p, events[0], -1)
		applied <- err
	}()
	select {
	case err := <-applied:
		t.Fatalf("the live apply finished during the swap: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	if err := blocker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-rebuilt; err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if err := <-applied; err != nil {
		t.Fatalf("live apply after the swap: %v", err)
	}
	checkReadModel(t, s.db)
	checkProgress(t, s.db)
	if got := viewStates(t, s.db)[id]; got.Seats != 3 {
		t.Errorf("row after the swap = %+v, want the live apply's 3 seats", got)
	}
}

// waitForLockWait waits until some session waits for a lock on the table.
func waitForLockWait(t testing.TB, db *pgxpool.Pool, table string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var waiting bool
		err := db.QueryRow(context.Background(), `SELECT exists(SELECT 1 FROM pg_locks
			WHERE NOT granted AND locktype = 'relation' AND relation = to_regclass($1))`, table).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
	}
	t.Fatalf("nobody waits for a lock on %s", table)
}
