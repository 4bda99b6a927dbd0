package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

type fixture struct {
	db      *pgxpool.Pool
	rdb     *redis.Client
	streams projections.Streams
}

func newFixture(t *testing.T) fixture {
	db := testenv.Postgres(t)
	rdb, prefix := testenv.Redis(t)
	return fixture{db: db, rdb: rdb, streams: projections.Streams{Prefix: prefix, Partitions: 4}}
}

func (f fixture) config() relay.Config {
	return relay.Config{DB: f.db, Redis: f.rdb, Streams: f.streams, PollInterval: 20 * time.Millisecond,
		Takeover: 50 * time.Millisecond, BatchSize: 50, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

// appendEvents appends n events to each of the given number of new streams.
func (f fixture) appendEvents(t *testing.T, streams, n int) {
	t.Helper()
	for range streams {
		s := eventstore.Stream{ID: uuid.New(), Type: "subscription"}
		for v := range n {
			e := eventstore.NewEvent{Type: "test.happened", SchemaVersion: 1, Data: json.RawMessage(fmt.Sprintf(`{"v": %d}`, v)),
				OccurredAt: time.Now()}
			if _, err := eventstore.Append(context.Background(), f.db, s, int64(v), []eventstore.NewEvent{e}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// published reads every partition and returns the entries' events, checking each decodes and
// sits in the partition of its stream, with strictly increasing ids.
func (f fixture) published(t *testing.T) []eventstore.Event {
	t.Helper()
	var all []eventstore.Event
	for p := range f.streams.Partitions {
		entries, err := f.rdb.XRange(context.Background(), f.streams.Key(p), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var prev eventstore.Position
		for _, entry := range entries {
			e, err := projections.Decode(entry.ID, entry.Values)
			if err != nil {
				t.Fatal(err)
			}
			if got := projections.EntryID(e.Position); got != entry.ID {
				t.Errorf("entry %s carries position %s", entry.ID, got)
			}
			if f.streams.Partition(e.StreamID) != p {
				t.Errorf("event of stream %s in partition %d", e.StreamID, p)
			}
			if !prev.Before(e.Position) {
				t.Errorf("partition %d: %v after %v", p, e.Position, prev)
			}
			prev = e.Position
			all = append(all, e)
		}
	}
	return all
}

// checkExactlyOnce fails unless Redis holds every stored event exactly once, with the same
// envelope, and each stream's events in version order.
func (f fixture) checkExactlyOnce(t *testing.T) {
	t.Helper()
	stored, err := eventstore.ReadAll(context.Background(), f.db, eventstore.Position{}, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	got := f.published(t)
	seen := map[uuid.UUID]eventstore.Event{}
	lastVersion := map[uuid.UUID]int64{}
	for _, e := range got {
		if _, dup := seen[e.ID]; dup {
			t.Errorf("event %s published twice", e.ID)
		}
		seen[e.ID] = e
		if e.Version != lastVersion[e.StreamID]+1 {
			t.Errorf("stream %s: version %d after %d", e.StreamID, e.Version, lastVersion[e.StreamID])
		}
		lastVersion[e.StreamID] = e.Version
	}
	for _, want := range stored {
		e, ok := seen[want.ID]
		if !ok {
			t.Errorf("event %s (%v) never published", want.ID, want.Position)
			continue
		}
		if e.Position != want.Position || e.Type != want.Type || string(e.Data) != string(want.Data) ||
			e.Metadata != want.Metadata || !e.OccurredAt.Equal(want.OccurredAt) || e.StreamType != want.StreamType {
			t.Errorf("published %+v, stored %+v", e, want)
		}
	}
	if len(got) != len(stored) {
		t.Errorf("%d entries in Redis, %d events in the store", len(got), len(stored))
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func start(t *testing.T, r *relay.Relay) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	return func() { cancel(); <-done }
}

func TestRelayPublishesEveryEventOnceUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := relay.New(f.config())
	stop := start(t, r)
	defer stop()

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); f.appendEvents(t, 5, 6) }()
	}
	wg.Wait()
	waitFor(t, "all 240 events published", func() bool { return r.Published() == 240 })
	f.checkExactlyOnce(t)
}

// TestRelayCrashBetweenPublishAndCheckpoint kills the relay after its entries reached Redis but
// before it saved its checkpoint; the next relay publishes the batch again, and Redis refuses
// every entry it already holds.
func TestRelayCrashBetweenPublishAndCheckpoint(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.appendEvents(t, 10, 3)

	crash := errors.New("killed after XADD, before the checkpoint")
	cfg := f.config()
	crashed := make(chan struct{})
	var once sync.Once
	cfg.AfterPublish = func([]eventstore.Event) error { once.Do(func() { close(crashed) }); return crash }
	crashing := relay.New(cfg)
	stop := start(t, crashing)
	<-crashed
	stop()
	if crashing.Checkpoint() != (eventstore.Position{}) {
		t.Fatal("the crashing relay saved a checkpoint")
	}
	inRedis := len(f.published(t))
	if inRedis == 0 {
		t.Fatal("nothing in Redis after the crash")
	}

	f.appendEvents(t, 2, 2)
	next := relay.New(f.config())
	stop = start(t, next)
	defer stop()
	waitFor(t, "caught up", func() bool { return next.Checkpoint().GlobalPosition == 34 })
	if want := int64(34 - inRedis); next.Published() != want {
		t.Errorf("the restarted relay added %d entries, want %d: the %d already in Redis must be refused",
			next.Published(), want, inRedis)
	}
	f.checkExactlyOnce(t)
}

// TestOneRelayLeadsAndAnotherTakesOver: of two relays only one publishes; when it dies the other
// takes over and publishes what follows.
func TestOneRelayLeadsAndAnotherTakesOver(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, b := relay.New(f.config()), relay.New(f.config())
	stopA := start(t, a)
	waitFor(t, "a leads", a.Leading)
	stopB := start(t, b)
	defer stopB()
	f.appendEvents(t, 3, 2)
	waitFor(t, "published", func() bool { return a.Published() == 6 })
	time.Sleep(200 * time.Millisecond) // several takeover attempts by b
	if b.Leading() || b.Published() != 0 {
		t.Fatalf("b leads=%v published=%d while a leads", b.Leading(), b.Published())
	}

	stopA()
	waitFor(t, "b takes over", b.Leading)
	f.appendEvents(t, 2, 2)
	waitFor(t, "b publishes", func() bool { return b.Published() == 4 })
	f.checkExactlyOnce(t)
}

// TestRelayWakesOnNotify: with polling effectively off, a notification alone brings a new event
// to Redis.
func TestRelayWakesOnNotify(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	cfg.PollInterval = time.Hour
	r := relay.New(cfg)
	stop := start(t, r)
	defer stop()
	waitFor(t, "leading", r.Leading)
	time.Sleep(100 * time.Millisecond) // let it reach its wait

	notifier := eventstore.NewNotifier(f.db, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go notifier.Run(ctx)
	f.appendEvents(t, 1, 1)
	notifier.Notify()
	waitFor(t, "the event published on notification", func() bool { return r.Published() == 1 })
}

// TestTrimKeepsWhatGroupsStillNeed: trimming removes only entries every group acknowledged.
func TestTrimKeepsWhatGroupsStillNeed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.streams.Partitions = 1
	f.appendEvents(t, 1, 10)
	r := relay.New(f.config())
	stop := start(t, r)
	waitFor(t, "published", func() bool { return r.Published() == 10 })
	stop()

	ctx, key := context.Background(), f.streams.Key(0)
	for _, g := range []string{"fast", "slow"} {
		if err := f.rdb.XGroupCreate(ctx, key, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(group string, n int64) []redis.XMessage {
		res, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{key, ">"}, Count: n}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Messages
	}
	fast := read("fast", 10)
	for _, m := range fast {
		f.rdb.XAck(ctx, key, "fast", m.ID)
	}
	slow := read("slow", 6)
	for _, m := range slow[:3] {
		f.rdb.XAck(ctx, key, "slow", m.ID) // 3 acked, 3 pending, 4 never delivered
	}
	if err := relay.Trim(ctx, f.rdb, f.streams); err != nil {
		t.Fatal(err)
	}
	left, err := f.rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) < 7 || left[len(left)-7].ID != slow[3].ID {
		t.Fatalf("after trim %d entries remain; the slow group's pending entry %s and everything after must", len(left), slow[3].ID)
	}
	// Force an exact check of what "approximate" trimming may keep: nothing needed is gone.
	for _, m := range append(slow[3:], fast[6:]...) {
		if res, _ := f.rdb.XRange(ctx, key, m.ID, m.ID).Result(); len(res) != 1 {
			t.Errorf("entry %s still needed by a group was trimmed", m.ID)
		}
	}
}

// TestTrimWaitsForAMissingGroup: a projector's group that Redis lost is being re-created (its
// consumer catches up from the store up to the stream's first entry, then creates it there),
// so the other groups' progress must not trim the stream meanwhile.
func TestTrimWaitsForAMissingGroup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.streams.Partitions = 1
	// More entries than a stream node holds (100): approximate trimming removes whole nodes.
	const n = 250
	f.appendEvents(t, 1, n)
	r := relay.New(f.config())
	stop := start(t, r)
	waitFor(t, "published", func() bool { return r.Published() == n })
	stop()

	ctx, key := context.Background(), f.streams.Key(0)
	if err := f.rdb.XGroupCreate(ctx, key, "fast", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "fast", Consumer: "c", Streams: []string{key, ">"}, Count: n}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res[0].Messages {
		f.rdb.XAck(ctx, key, "fast", m.ID)
	}
	if err := relay.Trim(ctx, f.rdb, f.streams, "fast", "lost"); err != nil {
		t.Fatal(err)
	}
	if left, err := f.rdb.XLen(ctx, key).Result(); err != nil || left != n {
		t.Fatalf("%d entries (%v) left with group \"lost\" missing, want all %d", left, err, n)
	}
	// Once it exists (at the start, as if it had caught up before the first entry), trimming
	// follows the slowest group again.
	if err := f.rdb.XGroupCreate(ctx, key, "lost", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := relay.Trim(ctx, f.rdb, f.streams, "fast", "lost"); err != nil {
		t.Fatal(err)
	}
	if left, err := f.rdb.XLen(ctx, key).Result(); err != nil || left != n {
		t.Fatalf("%d entries (%v) left, want all %d: group \"lost\" has read none", left, err, n)
	}
}

// TestRelaySavesItsCheckpointWhenIdle: with a checkpoint interval far longer than the test, the
// saved checkpoint still reaches the last event once the relay finds nothing more to publish,
// so Lag (and a relay taking over) start from there.
func TestRelaySavesItsCheckpointWhenIdle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config()
	cfg.CheckpointEvery = time.Hour
	r := relay.New(cfg)
	stop := start(t, r)
	defer stop()
	lagZero := func() bool {
		lag, err := relay.Lag(context.Background(), f.db, "relay")
		if err != nil {
			t.Fatal(err)
		}
		return lag == 0
	}
	f.appendEvents(t, 3, 4)
	waitFor(t, "all 12 events published", func() bool { return r.Published() == 12 })
	waitFor(t, "lag 0", lagZero)
	f.appendEvents(t, 1, 2)
	waitFor(t, "lag 0 after more events", lagZero)
}
