package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

// dlqProjector records events in dlq_applied and refuses one event while poisoned is set.
type dlqProjector struct {
	poison   uuid.UUID
	poisoned atomic.Bool
}

func (p *dlqProjector) Name() string { return "dlq-test" }

func (p *dlqProjector) Apply(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	if p.poisoned.Load() && e.ID == p.poison {
		return errors.New("poisoned in the test")
	}
	_, err := tx.Exec(ctx, `INSERT INTO dlq_applied (event_id) VALUES ($1)`, e.ID)
	return err
}

// TestDLQListAndRedrive: an entry a consumer dead-letters is shown by `dlq list`, after Redis lost
// its data too; `dlq redrive` fails (and keeps it) while the projector still fails, and applies it
// from the event store and removes it once fixed.
func TestDLQListAndRedrive(t *testing.T) {
	// Not parallel: it replaces lookupProjectors.
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `CREATE TABLE dlq_applied (event_id uuid PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	redisURL := testenv.RedisURL(t)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	blocking := redis.NewClient(opts)
	defer blocking.Close()
	streams := projections.Streams{Prefix: prefix, Partitions: 2}
	proj := &dlqProjector{}
	getenv := func(k string) string { return map[string]string{"DATABASE_URL": dbURL}[k] }
	billingctl := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, args, getenv, &out)
		return out.String(), err
	}

	// Nothing yet.
	if out, err := billingctl("dlq", "list"); err != nil || !strings.Contains(out, "no dead letters") {
		t.Fatalf("dlq list on nothing: %q, %v", out, err)
	}

	// A consumer dead-letters the poisoned event.
	consumer, err := projections.NewConsumer(projections.ConsumerConfig{
		DB: db, Redis: rdb, Blocking: blocking, Streams: streams, Projector: proj, ConsumerName: "c1",
		Block: time.Second, MaxDeliveries: 2, RetryBackoff: func(int) time.Duration { return 10 * time.Millisecond },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	stopConsumer := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
	defer stopConsumer()
	waitUntil(t, "consumer groups", func() bool {
		for p := range streams.Partitions {
			g, err := rdb.XInfoGroups(ctx, streams.Key(p)).Result()
			if err != nil || len(g) != 1 {
				return false
			}
		}
		return true
	})
	var events []eventstore.Event
	for _, id := range []uuid.UUID{uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())} {
		rec, err := eventstore.Append(ctx, db, eventstore.Stream{ID: id, Type: "test"}, 0, []eventstore.NewEvent{
			{Type: "test.happened", SchemaVersion: 1, Data: json.RawMessage(`{}`), OccurredAt: time.Now()}})
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, rec[0])
	}
	proj.poison = events[1].ID
	proj.poisoned.Store(true)
	waitUntil(t, "events visible", func() bool {
		got, err := eventstore.ReadAll(ctx, db, eventstore.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == len(events) {
			events = got
			return true
		}
		return false
	})
	for _, e := range events {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: streams.Key(streams.Partition(e.StreamID)),
			ID: projections.EntryID(e.Position), Values: projections.Encode(e)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadLetters := func() int64 {
		t.Helper()
		n, err := projections.CountDeadLetters(ctx, db, proj.Name())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitUntil(t, "the dead letter", func() bool { return deadLetters() == 1 })
	stopConsumer()
	// Redis loses its data: the dead letter is in PostgreSQL, and billingctl needs nothing else.
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}

	out, err := billingctl("dlq", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dlq-test: 1 dead letter(s)", "ENTRY", "DELIVERIES", "ERROR", proj.poison.String(),
		projections.EntryID(events[1].Position), events[1].StreamID.String(), "test.happened", "poisoned in the test"} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq list output lacks %q:\n%s", want, out)
		}
	}
	if out, err := billingctl("dlq", "list", "--group", "other", "--limit", "5"); err != nil || !strings.Contains(out, "other: no dead letters") {
		t.Errorf("dlq list --group other: %q, %v", out, err)
	}

	// Unknown to billingctl's registry: refused, nothing touched.
	if _, err := billingctl("dlq", "redrive"); err == nil || !strings.Contains(err.Error(), `unknown projector "dlq-test"`) {
		t.Errorf("dlq redrive of an unregistered projector: %v", err)
	}
	old := lookupProjectors
	lookupProjectors = func(*pgxpool.Pool) map[string]projections.Projector {
		return map[string]projections.Projector{proj.Name(): proj}
	}
	defer func() { lookupProjectors = old }()

	// Still broken: fails, and the dead letter stays.
	out, err = billingctl("dlq", "redrive", "--group", "dlq-test")
	if err == nil || !strings.Contains(out, "failed") || deadLetters() != 1 {
		t.Fatalf("redrive while broken: %q, %v", out, err)
	}
	// An id that is not a number is a usage error.
	if _, err := billingctl("dlq", "redrive", "--group", "dlq-test", "1-1"); err == nil || !strings.Contains(err.Error(), `"1-1" is not a dead letter id`) {
		t.Errorf("dlq redrive 1-1: %v, want a usage error", err)
	}
	// Fixed: applied from the store and removed.
	proj.poisoned.Store(false)
	dead, err := projections.ListDeadLetters(ctx, db, proj.Name(), 0)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters: %+v, %v", dead, err)
	}
	id := strconv.FormatInt(dead[0].ID, 10)
	out, err = billingctl("dlq", "redrive", "--group", "dlq-test", id)
	if err != nil || !strings.Contains(out, "applied   "+id) || !strings.Contains(out, "0 dead letter(s) left") {
		t.Fatalf("redrive after the fix: %q, %v", out, err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM dlq_applied`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d events applied (%v), want 2", n, err)
	}
	if out, err := billingctl("dlq", "redrive", "--group", "dlq-test"); err != nil || !strings.Contains(out, "no dead letters") {
		t.Errorf("redrive of nothing: %q, %v", out, err)
	}
	for _, args := range [][]string{{"dlq", "list", "--limit", "0"}, {"dlq", "list", "extra"}} {
		if _, err := billingctl(args...); err == nil {
			t.Errorf("billingctl %v: no error", args)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
