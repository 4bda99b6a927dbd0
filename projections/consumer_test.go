package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

// ---- test projector -------------------------------------------------------------------------

// pipeProjector records every event it applies as a row of test_applied. The primary key makes
// a second application of an event fail, and seq records the order of application.
type pipeProjector struct {
	name   string
	mu     sync.Mutex
	fail   map[uuid.UUID]error                           // events that fail to apply, and how
	before func(context.Context, eventstore.Event) error // runs first in Apply (gates, delays)
}

func newPipeProjector(t *testing.T, db *pgxpool.Pool, name string) *pipeProjector {
	t.Helper()
	_, err := db.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS test_applied (
		projector text NOT NULL, event_id uuid NOT NULL, stream_id uuid NOT NULL, version bigint NOT NULL,
		seq bigserial, PRIMARY KEY (projector, event_id))`)
	if err != nil {
		t.Fatal(err)
	}
	return &pipeProjector{name: name, fail: map[uuid.UUID]error{}}
}

func (p *pipeProjector) Name() string { return p.name }

func (p *pipeProjector) Apply(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	if p.before != nil {
		if err := p.before(ctx, e); err != nil {
			return err
		}
	}
	p.mu.Lock()
	err := p.fail[e.ID]
	p.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO test_applied (projector, event_id, stream_id, version) VALUES ($1, $2, $3, $4)`,
		p.name, e.ID, e.StreamID, e.Version)
	return err
}

func (p *pipeProjector) failOn(id uuid.UUID, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[id] = err
}

func (p *pipeProjector) fix(id uuid.UUID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.fail, id)
}

// ---- test environment -----------------------------------------------------------------------

type pipeEnv struct {
	t        *testing.T
	db       *pgxpool.Pool
	rdb      *redis.Client
	blocking *redis.Client
	prefix   string
	streams  Streams
	logMu    sync.Mutex
	logBuf   bytes.Buffer
}

func newPipeEnv(t *testing.T, partitions int) *pipeEnv {
	t.Helper()
	env := &pipeEnv{t: t, db: testenv.Postgres(t)}
	env.rdb, env.prefix = testenv.Redis(t)
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	env.blocking = redis.NewClient(opts)
	t.Cleanup(func() { env.blocking.Close() })
	env.streams = Streams{Prefix: env.prefix, Partitions: partitions}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consumer logs:\n%s", env.logs())
		}
	})
	return env
}

func (env *pipeEnv) Write(b []byte) (int, error) {
	env.logMu.Lock()
	defer env.logMu.Unlock()
	return env.logBuf.Write(b)
}

func (env *pipeEnv) logs() string {
	env.logMu.Lock()
	defer env.logMu.Unlock()
	return env.logBuf.String()
}

// consumer makes a consumer with test-friendly settings; tweak adjusts them.
func (env *pipeEnv) consumer(p Projector, name string, tweak func(*ConsumerConfig)) *Consumer {
	env.t.Helper()
	cfg := ConsumerConfig{
		DB: env.db, Redis: env.rdb, Blocking: env.blocking, Streams: env.streams, Projector: p,
		ConsumerName: name, Block: time.Second, BatchSize: 10, MinIdle: 30 * time.Second,
		RetryBackoff: func(int) time.Duration { return 20 * time.Millisecond },
		Logger:       slog.New(slog.NewTextHandler(env, &slog.HandlerOptions{Level: slog.LevelDebug})).With("name", name),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := NewConsumer(cfg)
	if err != nil {
		env.t.Fatal(err)
	}
	return c
}

// running is a consumer running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned…
	err    error         // …with this
}

// stop cancels the consumer and returns Run's error.
func (r *running) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		return errors.New("Run did not return within 30 s of cancel")
	}
}

// start runs c until stopped (at the latest when the test ends).
func (env *pipeEnv) start(c *Consumer) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = c.Run(ctx)
	}()
	env.t.Cleanup(func() { r.stop() })
	return r
}

func (env *pipeEnv) waitFor(what string, cond func() bool) {
	env.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			env.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGroups waits until every partition has the group: the consumers are past their start.
func (env *pipeEnv) waitGroups(group string) {
	env.t.Helper()
	env.waitFor("consumer groups", func() bool {
		for p := range env.streams.Partitions {
			groups, err := env.rdb.XInfoGroups(context.Background(), env.streams.Key(p)).Result()
			if err != nil || !containsGroup(groups, group) {
				return false
			}
		}
		return true
	})
}

func containsGroup(groups []redis.XInfoGroup, name string) bool {
	for _, g := range groups {
		if g.Name == name {
			return true
		}
	}
	return false
}

// appendVersions appends versions from..to of each stream (one event and one transaction per
// append, round-robin over the streams) and returns them.
func (env *pipeEnv) appendVersions(streamIDs []uuid.UUID, from, to int64) []eventstore.Event {
	env.t.Helper()
	var out []eventstore.Event
	for v := from; v <= to; v++ {
		for _, id := range streamIDs {
			out = append(out, env.appendOne(env.db, id, v))
		}
	}
	return out
}

func (env *pipeEnv) appendOne(q eventstore.Querier, streamID uuid.UUID, version int64) eventstore.Event {
	env.t.Helper()
	recorded, err := eventstore.Append(context.Background(), q, eventstore.Stream{ID: streamID, Type: "test"}, version-1,
		[]eventstore.NewEvent{{Type: "test.happened", SchemaVersion: 1, Data: json.RawMessage(fmt.Sprintf(`{"v":%d}`, version)),
			OccurredAt: time.Now()}})
	if err != nil {
		env.t.Fatal(err)
	}
	return recorded[0]
}

// appendOutOfLogOrder appends version to a stream the way the event store did before it refused
// appends after a version a younger transaction wrote (eventstore.Append): with a raw INSERT, so
// that q's transaction, older than the one that wrote version-1, puts this version before it
// in the log. Stores written by earlier releases hold such histories; consumers must cope.
func (env *pipeEnv) appendOutOfLogOrder(q eventstore.Querier, streamID uuid.UUID, version int64) eventstore.Event {
	env.t.Helper()
	ctx := context.Background()
	_, err := q.Exec(ctx, `INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
		VALUES ($1, 'test', $2, $3, 'test.happened', 1, $4, '{}', now())`,
		streamID, version, uuid.New(), json.RawMessage(fmt.Sprintf(`{"v":%d}`, version)))
	if err != nil {
		env.t.Fatal(err)
	}
	events, err := eventstore.Load(ctx, q, streamID, eventstore.LoadOptions{AfterVersion: version - 1, UpToVersion: version})
	if err != nil || len(events) != 1 {
		env.t.Fatalf("load version %d: %v, %d events", version, err, len(events))
	}
	return events[0]
}

// waitRedelivered waits until the first pending entry of key has been delivered well over
// MaxDeliveries (2 in the tests that call it) times, or something was dead-lettered.
func (env *pipeEnv) waitRedelivered(group, key string) {
	env.t.Helper()
	env.waitFor("well over MaxDeliveries deliveries (or a dead letter)", func() bool {
		if env.deadLetterCount(group) > 0 {
			return true
		}
		pend, err := env.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: key, Group: group, Start: "-", End: "+", Count: 10}).Result()
		return err == nil && len(pend) > 0 && pend[0].RetryCount > 4
	})
}

// streamIDsIn returns n new stream ids that fall in partition p.
func streamIDsIn(streams Streams, p, n int) []uuid.UUID {
	var ids []uuid.UUID
	for len(ids) < n {
		if id := uuid.Must(uuid.NewV7()); streams.Partition(id) == p {
			ids = append(ids, id)
		}
	}
	return ids
}

func newStreamIDs(n int) []uuid.UUID {
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	return ids
}

// visible waits until the global log reader returns at least n events and returns them all, in
// log order: what the relay would publish.
func (env *pipeEnv) visible(n int) []eventstore.Event {
	env.t.Helper()
	var events []eventstore.Event
	env.waitFor(fmt.Sprintf("%d events visible to ReadAll", n), func() bool {
		var err error
		events, err = eventstore.ReadAll(context.Background(), env.db, eventstore.Position{}, 100000)
		if err != nil {
			env.t.Fatal(err)
		}
		return len(events) >= n
	})
	return events
}

// publish does what the relay does: XADD each event to its partition with its position as id.
// Publishing the same event again must be refused.
func (env *pipeEnv) publish(events ...eventstore.Event) {
	env.t.Helper()
	ctx := context.Background()
	for _, e := range events {
		args := &redis.XAddArgs{Stream: env.streams.Key(env.streams.Partition(e.StreamID)), ID: EntryID(e.Position), Values: Encode(e)}
		if err := env.rdb.XAdd(ctx, args).Err(); err != nil {
			env.t.Fatalf("publish %s: %v", EntryID(e.Position), err)
		}
		if err := env.rdb.XAdd(ctx, args).Err(); err == nil {
			env.t.Fatalf("publishing %s again was accepted", EntryID(e.Position))
		}
	}
}

// flush deletes every key of the test's prefix: what a FLUSHALL looks like to a consumer.
func (env *pipeEnv) flush() {
	env.t.Helper()
	ctx := context.Background()
	keys, err := env.rdb.Keys(ctx, env.prefix+"*").Result()
	if err != nil {
		env.t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := env.rdb.Del(ctx, keys...).Err(); err != nil {
			env.t.Fatal(err)
		}
	}
}

func (env *pipeEnv) appliedCount(projector string) int {
	var n int
	if err := env.db.QueryRow(context.Background(), `SELECT count(*) FROM test_applied WHERE projector = $1`, projector).Scan(&n); err != nil {
		env.t.Fatal(err)
	}
	return n
}

func (env *pipeEnv) isApplied(projector string, id uuid.UUID) bool {
	var n int
	if err := env.db.QueryRow(context.Background(), `SELECT count(*) FROM test_applied WHERE projector = $1 AND event_id = $2`, projector, id).Scan(&n); err != nil {
		env.t.Fatal(err)
	}
	return n == 1
}

// pending is the number of entries of the group not yet acknowledged, over all partitions.
func (env *pipeEnv) pending(group string) int64 {
	var n int64
	for p := range env.streams.Partitions {
		pend, err := env.rdb.XPending(context.Background(), env.streams.Key(p), group).Result()
		if err == nil {
			n += pend.Count
		}
	}
	return n
}

func (env *pipeEnv) deadLetterCount(group string) int64 {
	n, err := CountDeadLetters(context.Background(), env.db, group)
	if err != nil {
		env.t.Fatal(err)
	}
	return n
}

// assertExactlyOnce checks that the read model holds every one of events exactly once and
// nothing else, and that each stream's events were applied in version order.
func (env *pipeEnv) assertExactlyOnce(projector string, events []eventstore.Event) {
	env.t.Helper()
	rows, err := env.db.Query(context.Background(), `SELECT event_id, stream_id, version FROM test_applied
		WHERE projector = $1 ORDER BY seq`, projector)
	if err != nil {
		env.t.Fatal(err)
	}
	type row struct {
		ID, Stream uuid.UUID
		Version    int64
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		env.t.Fatal(err)
	}
	want := map[uuid.UUID]bool{}
	for _, e := range events {
		want[e.ID] = true
	}
	seen := map[uuid.UUID]bool{}
	last := map[uuid.UUID]int64{}
	for _, r := range got {
		if !want[r.ID] {
			env.t.Errorf("applied event %s, which is not expected", r.ID)
		}
		if seen[r.ID] {
			env.t.Errorf("event %s applied twice", r.ID)
		}
		seen[r.ID] = true
		if r.Version != last[r.Stream]+1 {
			env.t.Errorf("stream %s: version %d applied after version %d", r.Stream, r.Version, last[r.Stream])
		}
		last[r.Stream] = r.Version
	}
	for _, e := range events {
		if !seen[e.ID] {
			env.t.Errorf("event %s (stream %s v%d) was never applied", e.ID, e.StreamID, e.Version)
		}
	}
	if len(got) != len(want) {
		env.t.Errorf("read model has %d rows, want %d", len(got), len(want))
	}
}

func sumStats(cs ...*Consumer) ConsumerStats {
	var s ConsumerStats
	for _, c := range cs {
		x := c.Stats()
		s.Applied += x.Applied
		s.Duplicates += x.Duplicates
		s.Retries += x.Retries
		s.DeadLettered += x.DeadLettered
		s.Trimmed += x.Trimmed
		s.Claimed += x.Claimed
		s.CatchUps += x.CatchUps
		s.CaughtUp += x.CaughtUp
	}
	return s
}

// ---- tests ----------------------------------------------------------------------------------

func TestNewConsumerValidatesConfig(t *testing.T) {
	t.Parallel()
	db := &pgxpool.Pool{}
	a, b := redis.NewClient(&redis.Options{}), redis.NewClient(&redis.Options{})
	defer a.Close()
	defer b.Close()
	good := ConsumerConfig{DB: db, Redis: a, Blocking: b, Streams: Streams{Prefix: "x:", Partitions: 2},
		Projector: &pipeProjector{name: "p"}, ConsumerName: "c1"}
	for name, tc := range map[string]struct {
		tweak func(*ConsumerConfig)
		ok    bool
	}{
		"defaults":            {func(*ConsumerConfig) {}, true},
		"block 5s":            {func(c *ConsumerConfig) { c.Block = 5 * time.Second }, true},
		"block too short":     {func(c *ConsumerConfig) { c.Block = 500 * time.Millisecond }, false},
		"block too long":      {func(c *ConsumerConfig) { c.Block = 6 * time.Second }, false},
		"no blocking client":  {func(c *ConsumerConfig) { c.Blocking = nil }, false},
		"one client for both": {func(c *ConsumerConfig) { c.Blocking = c.Redis }, false},
		"no consumer name":    {func(c *ConsumerConfig) { c.ConsumerName = "" }, false},
		"no partitions":       {func(c *ConsumerConfig) { c.Streams.Partitions = 0 }, false},
		"no projector":        {func(c *ConsumerConfig) { c.Projector = nil }, false},
		"no database":         {func(c *ConsumerConfig) { c.DB = nil }, false},
	} {
		cfg := good
		tc.tweak(&cfg)
		c, err := NewConsumer(cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok = %v", name, err, tc.ok)
		}
		if name == "defaults" && err == nil {
			if c.cfg.Block != 2*time.Second || c.cfg.BatchSize != 100 || c.cfg.MaxDeliveries != 5 || c.cfg.MinIdle != 30*time.Second {
				t.Errorf("defaults: %+v", c.cfg)
			}
		}
	}
}

func TestDefaultRetryBackoff(t *testing.T) {
	t.Parallel()
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		4: 800 * time.Millisecond, 7: 5 * time.Second, 30: 5 * time.Second} {
		for range 50 {
			if d := DefaultRetryBackoff(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: %s, want within [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

// TestConsumersApplyEveryEventExactlyOnce: three consumers of one group share the partitions;
// every event is applied exactly once and in version order, although entries are published
// while they consume, every publication is repeated (and refused), and one consumer loses some
// of its acks, so those entries are claimed and delivered again.
func TestConsumersApplyEveryEventExactlyOnce(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 4)
	proj := newPipeProjector(t, env.db, "exactly-once")

	var mu sync.Mutex
	seen, lost := 0, map[string]bool{}
	loseSomeAcks := func(id string) hookAction {
		mu.Lock()
		defer mu.Unlock()
		if _, again := lost[id]; again {
			return proceed
		}
		seen++
		if seen%7 == 0 {
			lost[id] = true
			return skipAck
		}
		lost[id] = false
		return proceed
	}
	var consumers []*Consumer
	for i := range 3 {
		c := env.consumer(proj, fmt.Sprintf("c%d", i), func(cfg *ConsumerConfig) {
			cfg.BatchSize = 3
			cfg.MinIdle = 500 * time.Millisecond
		})
		if i == 0 {
			c.afterApply = loseSomeAcks
		}
		consumers = append(consumers, c)
		env.start(c)
	}
	env.waitGroups(proj.Name())

	// Twelve streams of five versions, appended concurrently (interleaving their transactions).
	ids := newStreamIDs(12)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for v := int64(1); v <= 5; v++ {
				env.appendOne(env.db, id, v)
			}
		})
	}
	wg.Wait()
	events := env.visible(60)
	for i := 0; i < len(events); i += 10 {
		env.publish(events[i:min(i+10, len(events))]...)
		time.Sleep(20 * time.Millisecond)
	}

	env.waitFor("every event applied and acknowledged", func() bool {
		return env.appliedCount(proj.Name()) == len(events) && env.pending(proj.Name()) == 0
	})
	env.assertExactlyOnce(proj.Name(), events)
	s := sumStats(consumers...)
	mu.Lock()
	lostAcks := 0
	for _, l := range lost {
		if l {
			lostAcks++
		}
	}
	mu.Unlock()
	if lostAcks == 0 {
		t.Fatal("no ack was lost: the test did not exercise redelivery")
	}
	// Each event changed the model once, whichever way it came (an entry refused as out of order
	// too often gets its predecessors from the store).
	if s.Applied+s.CaughtUp != int64(len(events)) {
		t.Errorf("stats %+v: %d changes of the model, want %d", s, s.Applied+s.CaughtUp, len(events))
	}
	if s.Duplicates < int64(lostAcks) {
		t.Errorf("%d acks lost, but %d duplicates acknowledged", lostAcks, s.Duplicates)
	}
	if s.DeadLettered != 0 || env.deadLetterCount(proj.Name()) != 0 {
		t.Errorf("stats %+v: nothing should have been dead-lettered", s)
	}
	for i, c := range consumers {
		t.Logf("consumer %d: %+v", i, c.Stats())
	}
}

// TestCrashBeforeAck: a consumer that dies after applying an entry but before acknowledging it
// leaves the entry pending; it is then applied again (a no-op) by another consumer that claims
// it, or by the same consumer when it restarts, and the read model holds it once.
func TestCrashBeforeAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		successor string // consumer name after the crash
	}{
		{"another consumer claims the entry", "survivor"},
		{"the restarted consumer finishes its own entries", "crashing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newPipeEnv(t, 2)
			proj := newPipeProjector(t, env.db, "crash")
			var target atomic.Pointer[string]
			crasher := env.consumer(proj, "crashing", nil)
			crasher.afterApply = func(id string) hookAction {
				if t := target.Load(); t != nil && *t == id {
					return crash
				}
				return proceed
			}
			r := env.start(crasher)
			env.waitGroups(proj.Name())

			events := env.appendVersions(newStreamIDs(4), 1, 3)
			events = env.visible(len(events))
			victim := events[5]
			victimEntry := EntryID(victim.Position)
			target.Store(&victimEntry)
			env.publish(events...)

			select {
			case <-r.done:
				if !errors.Is(r.err, errCrashed) {
					t.Fatalf("Run returned %v, want the crash", r.err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the consumer never reached the entry to crash on")
			}
			// Applied, but not acknowledged: still pending for the dead consumer, delivered once.
			if !env.isApplied(proj.Name(), victim.ID) {
				t.Fatal("the crash hook ran before the event was applied")
			}
			key := env.streams.Key(env.streams.Partition(victim.StreamID))
			pend, err := env.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
				Stream: key, Group: proj.Name(), Start: victimEntry, End: victimEntry, Count: 1}).Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(pend) != 1 || pend[0].Consumer != "crashing" || pend[0].RetryCount != 1 {
				t.Fatalf("entry %s after the crash: pending %+v, want pending for the crashed consumer", victimEntry, pend)
			}

			successor := env.consumer(proj, tc.successor, func(cfg *ConsumerConfig) { cfg.MinIdle = 300 * time.Millisecond })
			env.start(successor)
			env.waitFor("every event applied and acknowledged", func() bool {
				return env.appliedCount(proj.Name()) == len(events) && env.pending(proj.Name()) == 0
			})
			env.assertExactlyOnce(proj.Name(), events)
			s := successor.Stats()
			if s.Duplicates < 1 {
				t.Errorf("successor stats %+v: the crashed entry should have come back as a duplicate", s)
			}
			if tc.successor != "crashing" && s.Claimed < 1 {
				t.Errorf("successor stats %+v: it should have claimed the crashed consumer's entries", s)
			}
		})
	}
}

// TestPoisonEntryIsDeadLetteredThenRedriven: an entry that keeps failing is delivered
// MaxDeliveries times, then recorded in projection_dead_letters with its error and delivery
// count and acknowledged; its stream's next version, refused as out of order meanwhile, follows
// it. The other streams are not held up. Redrive while the projector is still broken leaves
// both; after the fix it applies them once each, in order, and deletes their rows.
func TestPoisonEntryIsDeadLetteredThenRedriven(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 2)
	proj := newPipeProjector(t, env.db, "poison")
	c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 3 })
	r := env.start(c)
	env.waitGroups(proj.Name())

	ids := newStreamIDs(3)
	events := env.appendVersions(ids, 1, 3)
	events = env.visible(len(events))
	var poison, successor eventstore.Event
	for _, e := range events {
		switch {
		case e.StreamID == ids[0] && e.Version == 2:
			poison = e
		case e.StreamID == ids[0] && e.Version == 3:
			successor = e
		}
	}
	proj.failOn(poison.ID, errors.New("poison: cannot apply"))
	env.publish(events...)

	env.waitFor("two dead letters and the rest applied", func() bool {
		return env.deadLetterCount(proj.Name()) == 2 && env.appliedCount(proj.Name()) == len(events)-2
	})
	env.waitFor("nothing pending", func() bool { return env.pending(proj.Name()) == 0 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	s := c.Stats()
	if s.DeadLettered != 2 || s.Retries != 4 {
		t.Errorf("stats %+v: want 2 dead-lettered after 2 retries each", s)
	}
	ctx := context.Background()
	dead, err := ListDeadLetters(ctx, env.db, proj.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 {
		t.Fatalf("dead letters: %+v", dead)
	}
	for i, want := range []struct {
		event eventstore.Event
		err   string
	}{{poison, "poison: cannot apply"}, {successor, ErrOutOfOrder.Error()}} {
		d := dead[i]
		if d.EventID != want.event.ID || d.StreamID != want.event.StreamID || d.Version != want.event.Version ||
			d.Type != want.event.Type || d.EntryID != EntryID(want.event.Position) || d.Group != proj.Name() ||
			d.Partition != env.streams.Partition(want.event.StreamID) || d.Deliveries != 3 ||
			!strings.Contains(d.Error, want.err) || time.Since(d.FailedAt) > time.Hour {
			t.Errorf("dead letter %d: %+v, want event %s v%d failing with %q after 3 deliveries", i, d, want.event.ID, want.event.Version, want.err)
		}
	}
	// Still broken: nothing moves.
	results, err := Redrive(ctx, env.db, proj)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Err == nil || results[1].Err == nil {
		t.Fatalf("redrive while broken: %+v", results)
	}
	if env.deadLetterCount(proj.Name()) != 2 || env.isApplied(proj.Name(), poison.ID) {
		t.Fatal("a failed redrive changed something")
	}
	// An unknown id, or another projector's, is reported, not fatal, and changes nothing.
	other := DeadLetter{Group: "other", EntryID: dead[0].EntryID, Error: "x", Deliveries: 1, FailedAt: time.Now()}
	if err := recordDeadLetter(ctx, env.db, other); err != nil {
		t.Fatal(err)
	}
	others, err := ListDeadLetters(ctx, env.db, "other", 0)
	if err != nil || len(others) != 1 {
		t.Fatalf("the other projector's dead letters: %+v, %v", others, err)
	}
	results, err = Redrive(ctx, env.db, proj, dead[1].ID+1000, others[0].ID)
	if err != nil || len(results) != 2 || !errors.Is(results[0].Err, ErrNotDeadLettered) || !errors.Is(results[1].Err, ErrNotDeadLettered) {
		t.Fatalf("redrive of an unknown id and another projector's: %+v, %v", results, err)
	}
	if env.deadLetterCount("other") != 1 {
		t.Fatal("redriving another projector's id touched its row")
	}

	// Fixed: the successor is listed first here to show redrive retries what was out of order.
	proj.fix(poison.ID)
	results, err = Redrive(ctx, env.db, proj, dead[1].ID, dead[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Err != nil || !r.Applied {
			t.Errorf("redrive %d: applied %v, err %v", r.ID, r.Applied, r.Err)
		}
	}
	if n := env.deadLetterCount(proj.Name()); n != 0 {
		t.Errorf("%d dead letters left after a successful redrive", n)
	}
	env.assertExactlyOnce(proj.Name(), events)
	if results, err := Redrive(ctx, env.db, proj); err != nil || len(results) != 0 {
		t.Errorf("redrive with no dead letters: %+v, %v", results, err)
	}
}

// TestTrimmedPendingEntries: a pending entry whose payload Redis no longer has (deleted or
// trimmed while a consumer held it) is acknowledged and reported once, never retried; its event
// is applied from the event store instead.
func TestTrimmedPendingEntries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		holder string // the consumer the entries were delivered to
		runner string // the consumer that then runs
		remove func(env *pipeEnv, events []eventstore.Event) []string
	}{
		{"own pending entry deleted, read back with id 0", "c1", "c1", deleteOne},
		{"dead consumer's entry deleted, claimed", "dead", "live", deleteOne},
		{"dead consumer's entries trimmed, claimed", "dead", "live", trimPartitionZero},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newPipeEnv(t, 2)
			proj := newPipeProjector(t, env.db, "trimmed")
			ctx := context.Background()
			for p := range env.streams.Partitions {
				if err := env.rdb.XGroupCreateMkStream(ctx, env.streams.Key(p), proj.Name(), "0").Err(); err != nil {
					t.Fatal(err)
				}
			}
			// Two streams in partition 0, one in partition 1, two versions each.
			ids := append(streamIDsIn(env.streams, 0, 2), streamIDsIn(env.streams, 1, 1)...)
			events := env.appendVersions(ids, 1, 2)
			events = env.visible(len(events))
			env.publish(events...)
			// Delivered to the holder, which never acknowledges them.
			streams := []string{env.streams.Key(0), env.streams.Key(1), ">", ">"}
			if err := env.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: proj.Name(), Consumer: tc.holder,
				Streams: streams, Count: 100, Block: -1}).Err(); err != nil {
				t.Fatal(err)
			}
			removed := tc.remove(env, events)
			if len(removed) == 0 {
				t.Fatal("nothing removed")
			}
			c := env.consumer(proj, tc.runner, func(cfg *ConsumerConfig) { cfg.MinIdle = 200 * time.Millisecond })
			env.start(c)
			env.waitFor("every event applied and acknowledged", func() bool {
				return env.appliedCount(proj.Name()) == len(events) && env.pending(proj.Name()) == 0
			})
			env.assertExactlyOnce(proj.Name(), events)
			s := c.Stats()
			if s.Trimmed != int64(len(removed)) || s.CaughtUp < 1 {
				t.Errorf("stats %+v: want %d trimmed and their events caught up from the store", s, len(removed))
			}
			// Not looped on: several more rounds (claims included) report nothing more.
			polls := c.polls.Load()
			env.waitFor("more rounds", func() bool { return c.polls.Load() > polls+6 })
			if again := c.Stats(); again.Trimmed != s.Trimmed || again.CaughtUp != s.CaughtUp {
				t.Errorf("stats went on moving: %+v, then %+v", s, again)
			}
			if !strings.Contains(env.logs(), "trimmed") {
				t.Error("the trimmed entry was not logged")
			}
		})
	}
}

// deleteOne deletes the entry of the second stream's last version, in the middle of partition 0:
// neither the stream's start nor a later version of the stream gives its loss away.
func deleteOne(env *pipeEnv, events []eventstore.Event) []string {
	e := events[4]
	id := EntryID(e.Position)
	if err := env.rdb.XDel(context.Background(), env.streams.Key(env.streams.Partition(e.StreamID)), id).Err(); err != nil {
		env.t.Fatal(err)
	}
	return []string{id}
}

func trimPartitionZero(env *pipeEnv, _ []eventstore.Event) []string {
	ctx := context.Background()
	key := env.streams.Key(0)
	before, err := env.rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		env.t.Fatal(err)
	}
	if err := env.rdb.XTrimMaxLen(ctx, key, 1).Err(); err != nil {
		env.t.Fatal(err)
	}
	var ids []string
	for _, m := range before[:len(before)-1] {
		ids = append(ids, m.ID)
	}
	return ids
}

// TestConvergesWhenRedisLosesData: whatever Redis loses, every read model ends up with every
// event of the store applied exactly once, with no manual step.
func TestConvergesWhenRedisLosesData(t *testing.T) {
	t.Parallel()

	t.Run("all keys deleted in the middle of consumption", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 4)
		proj := newPipeProjector(t, env.db, "flush")
		var applies atomic.Int64
		reached, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		proj.before = func(ctx context.Context, e eventstore.Event) error {
			if applies.Add(1) >= 3 {
				once.Do(func() { close(reached) })
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}
		var consumers []*Consumer
		for _, name := range []string{"c1", "c2"} {
			c := env.consumer(proj, name, func(cfg *ConsumerConfig) { cfg.BatchSize = 1 })
			consumers = append(consumers, c)
			env.start(c)
		}
		env.waitGroups(proj.Name())
		ids := newStreamIDs(10)
		first := env.visible(len(env.appendVersions(ids, 1, 3)))
		env.publish(first...)

		<-reached // consumption is under way…
		var delivered int64
		for p := range env.streams.Partitions {
			groups, err := env.rdb.XInfoGroups(context.Background(), env.streams.Key(p)).Result()
			if err != nil || len(groups) != 1 {
				t.Fatal(groups, err)
			}
			delivered += groups[0].EntriesRead
		}
		if delivered >= int64(len(first)) {
			t.Fatalf("all %d entries were delivered before the flush: nothing to lose", delivered)
		}
		env.flush()
		close(release)
		// …and goes on, with more events published after the "FLUSHALL": for half of the first
		// streams (the other half get nothing more, so nothing but a catch-up can complete them)
		// and for new streams.
		env.appendVersions(ids[:5], 4, 4)
		env.appendVersions(newStreamIDs(10), 1, 2)
		all := env.visible(55)
		env.publish(all[len(first):]...)

		env.waitFor("every event applied", func() bool { return env.appliedCount(proj.Name()) == len(all) })
		env.waitFor("nothing pending", func() bool { return env.pending(proj.Name()) == 0 })
		env.assertExactlyOnce(proj.Name(), all)
		// A catch-up counts what it applied once its batch has committed, so just after the
		// read model shows it: wait for the count rather than read it at once.
		env.waitFor("the catch-up counted", func() bool { return sumStats(consumers...).CaughtUp > 0 })
		if s := sumStats(consumers...); s.DeadLettered != 0 {
			t.Errorf("stats %+v: nothing should be dead-lettered", s)
		}
	})

	t.Run("stream trimmed past entries the group never read", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 2)
		proj := newPipeProjector(t, env.db, "trim")
		c := env.consumer(proj, "c1", nil)
		r := env.start(c)
		env.waitGroups(proj.Name())
		ids := newStreamIDs(4)
		first := env.visible(len(env.appendVersions(ids, 1, 2)))
		env.publish(first...)
		env.waitFor("first events applied", func() bool { return env.appliedCount(proj.Name()) == len(first) })
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}

		env.appendVersions(ids, 3, 5)
		all := env.visible(20)
		env.publish(all[len(first):]...)
		ctx := context.Background()
		for p := range env.streams.Partitions {
			env.rdb.XTrimMaxLen(ctx, env.streams.Key(p), 1)
		}

		c2 := env.consumer(proj, "c1", nil)
		env.start(c2)
		env.waitFor("every event applied", func() bool { return env.appliedCount(proj.Name()) == len(all) })
		env.assertExactlyOnce(proj.Name(), all)
		if s := c2.Stats(); s.CaughtUp == 0 {
			t.Errorf("stats %+v: the trimmed events must have come from the store", s)
		}
	})

	t.Run("checkpoint stays behind an entry that keeps failing", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 1)
		proj := newPipeProjector(t, env.db, "stuck")
		c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 1000 })
		env.start(c)
		env.waitGroups(proj.Name())

		failing := env.appendOne(env.db, uuid.Must(uuid.NewV7()), 1)
		proj.failOn(failing.ID, errors.New("not yet"))
		env.appendOne(env.db, uuid.Must(uuid.NewV7()), 1)
		all := env.visible(2)
		env.publish(all...)
		env.waitFor("the later event applied while the first one fails", func() bool {
			return env.appliedCount(proj.Name()) == 1 && c.Stats().Retries > 0
		})
		cp, err := Checkpoint(context.Background(), env.db, proj.Name(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !cp.Before(failing.Position) {
			t.Fatalf("checkpoint %s passed the unapplied entry %s", EntryID(cp), EntryID(failing.Position))
		}
		// Redis loses the failing entry; once the projector is fixed, it comes from the store.
		env.flush()
		proj.fix(failing.ID)
		env.waitFor("every event applied", func() bool { return env.appliedCount(proj.Name()) == len(all) })
		env.assertExactlyOnce(proj.Name(), all)
	})
}

// TestOutOfOrderDeliveryWaitsForThePredecessor: a stream's version 3 can precede its version 2
// in the log (its transaction took its id first), so it is delivered first. It is refused as
// out of order and retried, not acknowledged, and applied after version 2.
func TestOutOfOrderDeliveryWaitsForThePredecessor(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 2)
	proj := newPipeProjector(t, env.db, "order")
	c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 1000 })
	env.start(c)
	env.waitGroups(proj.Name())
	ctx := context.Background()

	stream := uuid.Must(uuid.NewV7())
	env.appendOne(env.db, stream, 1)
	early, err := env.db.Begin(ctx) // takes its transaction id before version 2's
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx)
	if _, err := early.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	v2 := env.appendOne(env.db, stream, 2)
	v3 := env.appendOutOfLogOrder(early, stream, 3)
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	events := env.visible(3)
	if events[1].ID != v3.ID || events[2].ID != v2.ID {
		t.Fatalf("log order %v: version 3 should precede version 2", []int64{events[0].Version, events[1].Version, events[2].Version})
	}

	env.publish(events[:2]...) // versions 1 and 3, as the relay would before version 2
	env.waitFor("version 3 refused at least once", func() bool {
		return c.Stats().Retries > 0 && env.isApplied(proj.Name(), events[0].ID)
	})
	if env.isApplied(proj.Name(), v3.ID) || env.deadLetterCount(proj.Name()) != 0 {
		t.Fatal("version 3 applied or dropped before version 2 arrived")
	}
	env.publish(v2)
	env.waitFor("all applied", func() bool {
		return env.appliedCount(proj.Name()) == 3 && env.pending(proj.Name()) == 0
	})
	env.assertExactlyOnce(proj.Name(), events)
}

// TestShutdownIsPrompt: Run returns within Block (plus a margin) of its context ending, whatever
// it is doing.
func TestShutdownIsPrompt(t *testing.T) {
	t.Parallel()
	const block = 2 * time.Second
	for _, tc := range []struct {
		name   string
		before func(env *pipeEnv, proj *pipeProjector) // before the consumer starts
		load   func(env *pipeEnv)                      // once its groups exist
		busy   func(env *pipeEnv, proj *pipeProjector, c *Consumer) bool
	}{
		{"idle, blocked reading", nil, nil, func(_ *pipeEnv, _ *pipeProjector, c *Consumer) bool {
			return c.polls.Load() > 3
		}},
		{"retrying a failing entry", func(env *pipeEnv, proj *pipeProjector) {
			proj.before = func(context.Context, eventstore.Event) error { return errors.New("always failing") }
		}, func(env *pipeEnv) {
			env.publish(env.visible(len(env.appendVersions(newStreamIDs(1), 1, 1)))...)
		}, func(env *pipeEnv, proj *pipeProjector, c *Consumer) bool {
			return c.Stats().Retries > 2
		}},
		{"applying slowly", func(env *pipeEnv, proj *pipeProjector) {
			proj.before = slowApply
		}, func(env *pipeEnv) {
			env.publish(env.visible(len(env.appendVersions(newStreamIDs(20), 1, 1)))...)
		}, func(env *pipeEnv, proj *pipeProjector, c *Consumer) bool {
			return env.appliedCount(proj.Name()) > 0
		}},
		{"catching up from the store", func(env *pipeEnv, proj *pipeProjector) {
			proj.before = slowApply
			env.visible(len(env.appendVersions(newStreamIDs(20), 1, 1)))
		}, nil, func(env *pipeEnv, proj *pipeProjector, c *Consumer) bool {
			return env.appliedCount(proj.Name()) > 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newPipeEnv(t, 2)
			proj := newPipeProjector(t, env.db, "shutdown")
			if tc.before != nil {
				tc.before(env, proj)
			}
			c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) {
				cfg.Block = block
				cfg.RetryBackoff = DefaultRetryBackoff
				cfg.MaxDeliveries = 1000
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			if tc.load != nil {
				env.waitGroups(proj.Name())
				tc.load(env)
			}
			env.waitFor("the consumer to be busy", func() bool { return tc.busy(env, proj, c) })
			cancel()
			cancelled := time.Now()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				t.Logf("returned %s after cancel", time.Since(cancelled).Round(time.Millisecond))
			case <-time.After(block + time.Second):
				t.Fatalf("Run still running %s after cancel", block+time.Second)
			}
		})
	}
}

func slowApply(ctx context.Context, _ eventstore.Event) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(300 * time.Millisecond):
		return nil
	}
}

// TestDatabaseOutageDeadLettersNothing: entries that fail because PostgreSQL is unreachable stay
// pending however often they are delivered; they are not the entries' fault.
func TestDatabaseOutageDeadLettersNothing(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 1)
	proj := newPipeProjector(t, env.db, "outage")
	db, err := pgxpool.New(context.Background(), env.db.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) {
		cfg.DB = db
		cfg.MaxDeliveries = 2
	})
	env.start(c)
	env.waitGroups(proj.Name())
	events := env.visible(len(env.appendVersions(newStreamIDs(3), 1, 1)))
	db.Close() // the consumer's database is gone
	env.publish(events...)
	key := env.streams.Key(0)
	env.waitRedelivered(proj.Name(), key)
	if n := env.deadLetterCount(proj.Name()); n != 0 || c.Stats().DeadLettered != 0 {
		t.Errorf("%d dead letters during a database outage", n)
	}
	groups, err := env.rdb.XInfoGroups(context.Background(), key).Result()
	if err != nil || len(groups) != 1 {
		t.Fatal(groups, err)
	}
	if undelivered := groups[0].Lag; groups[0].Pending+undelivered != int64(len(events)) {
		t.Errorf("%d entries pending and %d undelivered, want all %d not acknowledged", groups[0].Pending, undelivered, len(events))
	}
}

// TestDatabaseRestartDeadLettersNothing: while PostgreSQL starts up again it refuses
// connections (57P03), and a ping a moment later may already get through. An entry that failed
// that way failed because of the database, not because of itself, however often it was
// delivered meanwhile: it must be applied once the database is back, not dead-lettered.
func TestDatabaseRestartDeadLettersNothing(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 1)
	proj := newPipeProjector(t, env.db, "restart")
	c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 2 })
	env.start(c)
	env.waitGroups(proj.Name())
	events := env.visible(len(env.appendVersions(newStreamIDs(1), 1, 1)))
	proj.failOn(events[0].ID, fmt.Errorf("failed to connect: %w",
		&pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}))
	env.publish(events...)
	key := env.streams.Key(0)
	env.waitRedelivered(proj.Name(), key)
	proj.fix(events[0].ID)
	env.waitFor("the entry applied or dead-lettered", func() bool {
		return env.appliedCount(proj.Name()) == 1 || env.deadLetterCount(proj.Name()) > 0
	})
	if n := env.deadLetterCount(proj.Name()); n != 0 || c.Stats().DeadLettered != 0 {
		t.Errorf("%d dead letters for an entry that failed while the database restarted", n)
	}
}
