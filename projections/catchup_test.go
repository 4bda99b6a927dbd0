package projections

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
)

// TestCatchUpFromTheEventStore: a consumer whose groups are missing applies what the store holds
// after its checkpoints before it reads Redis, and creates its groups at its checkpoints.
func TestCatchUpFromTheEventStore(t *testing.T) {
	t.Parallel()

	t.Run("history written before the first start", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 2)
		proj := newPipeProjector(t, env.db, "history")
		history := env.visible(len(env.appendVersions(newStreamIDs(5), 1, 3)))
		c := env.consumer(proj, "c1", nil)
		env.start(c)
		env.waitFor("the history applied", func() bool { return env.appliedCount(proj.Name()) == len(history) })
		env.waitGroups(proj.Name())
		// The relay, lagging, publishes the history, then a new event: the groups start at the
		// checkpoints, so only the new one is delivered.
		env.publish(history...)
		next := env.appendOne(env.db, uuid.Must(uuid.NewV7()), 1)
		all := env.visible(len(history) + 1)
		env.publish(next)
		env.waitFor("the new event applied", func() bool { return env.isApplied(proj.Name(), next.ID) })
		env.assertExactlyOnce(proj.Name(), all)
		if s := c.Stats(); s.CaughtUp != int64(len(history)) || s.Applied != 1 || s.Duplicates != 0 {
			t.Errorf("stats %+v: want the history from the store and only the new event from Redis", s)
		}
		for p := range env.streams.Partitions {
			cp, err := Checkpoint(context.Background(), env.db, proj.Name(), p)
			if err != nil {
				t.Fatal(err)
			}
			var last eventstore.Position
			for _, e := range all {
				if env.streams.Partition(e.StreamID) == p {
					last = e.Position
				}
			}
			if cp != last {
				t.Errorf("partition %d: checkpoint %s, want its last event %s", p, EntryID(cp), EntryID(last))
			}
		}
	})

	t.Run("a later version precedes its predecessor in the log", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 2)
		proj := newPipeProjector(t, env.db, "inverted")
		ctx := context.Background()
		stream := uuid.Must(uuid.NewV7())
		env.appendOne(env.db, stream, 1)
		early, err := env.db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer early.Rollback(ctx)
		if _, err := early.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
			t.Fatal(err)
		}
		env.appendOne(env.db, stream, 2)
		env.appendOutOfLogOrder(early, stream, 3)
		if err := early.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		events := env.visible(3)
		if events[1].Version != 3 {
			t.Fatalf("log order: version %d second, want 3", events[1].Version)
		}
		c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 2 })
		env.start(c)
		env.waitFor("all applied", func() bool { return env.appliedCount(proj.Name()) == 3 })
		env.waitGroups(proj.Name())
		env.assertExactlyOnce(proj.Name(), events)
		if s := c.Stats(); s.DeadLettered != 0 || s.CaughtUp != 3 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("an event that cannot be applied is dead-lettered and the rest caught up", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 2)
		proj := newPipeProjector(t, env.db, "poisoned-history")
		// The poisoned stream (ids[1]) is alone in partition 1.
		ids := []uuid.UUID{streamIDsIn(env.streams, 0, 1)[0], streamIDsIn(env.streams, 1, 1)[0], streamIDsIn(env.streams, 0, 1)[0]}
		events := env.visible(len(env.appendVersions(ids, 1, 3)))
		var poison eventstore.Event
		for _, e := range events {
			if e.StreamID == ids[1] && e.Version == 2 {
				poison = e
			}
		}
		proj.failOn(poison.ID, errors.New("poison"))
		c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 2 })
		r := env.start(c)
		env.waitGroups(proj.Name())
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		dead, err := ListDeadLetters(ctx, env.db, proj.Name(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 2 || dead[0].EventID != poison.ID || !strings.Contains(dead[0].Error, "poison") ||
			dead[0].Deliveries != 2 || dead[1].StreamID != ids[1] || dead[1].Version != 3 {
			t.Fatalf("dead letters %+v: want version 2 (poison) and version 3 (its successor)", dead)
		}
		if n := env.appliedCount(proj.Name()); n != len(events)-2 {
			t.Fatalf("%d applied, want all but the two dead letters", n)
		}
		// Dead-lettered is settled: the checkpoint passes it (else every gap check would
		// dead-letter it again).
		if cp, err := Checkpoint(ctx, env.db, proj.Name(), 1); err != nil || cp != entryPosition(t, dead[1].EntryID) {
			t.Errorf("partition 1 checkpoint %s (%v), want its dead-lettered last event %s", EntryID(cp), err, dead[1].EntryID)
		}
		proj.fix(poison.ID)
		results, err := Redrive(ctx, env.db, proj)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Err != nil {
				t.Errorf("redrive %d: %v", r.ID, r.Err)
			}
		}
		env.assertExactlyOnce(proj.Name(), events)
		if n := env.deadLetterCount(proj.Name()); n != 0 {
			t.Errorf("%d dead letters left", n)
		}
	})

	t.Run("a lagging checkpoint before trimmed, applied entries is no gap", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 2)
		proj := newPipeProjector(t, env.db, "lagging")
		c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MinIdle = 200 * time.Millisecond })
		env.start(c)
		env.waitGroups(proj.Name())
		events := env.visible(len(env.appendVersions(newStreamIDs(4), 1, 3)))
		env.publish(events...)
		env.waitFor("all applied", func() bool {
			return env.appliedCount(proj.Name()) == len(events) && env.pending(proj.Name()) == 0
		})
		// The checkpoints lag (as when other consumers held lower entries), and the relay trims
		// what the group acknowledged.
		ctx := context.Background()
		if _, err := env.db.Exec(ctx, `DELETE FROM projection_checkpoints WHERE projector = $1`, proj.Name()); err != nil {
			t.Fatal(err)
		}
		for p := range env.streams.Partitions {
			env.rdb.XTrimMaxLen(ctx, env.streams.Key(p), 1)
		}
		before := c.Stats()
		polls := c.polls.Load()
		env.waitFor("several gap checks", func() bool { return c.polls.Load() > polls+10 })
		if after := c.Stats(); after.CatchUps != before.CatchUps {
			t.Errorf("caught up %d times with nothing missing", after.CatchUps-before.CatchUps)
		}
	})

	t.Run("groups are created at the checkpoint, not at $", func(t *testing.T) {
		t.Parallel()
		env := newPipeEnv(t, 2)
		proj := newPipeProjector(t, env.db, "not-dollar")
		history := env.visible(len(env.appendVersions(newStreamIDs(4), 1, 2)))
		c := env.consumer(proj, "c1", nil)
		// Between the catch-up and the creation of the groups, the relay publishes a new event.
		var next eventstore.Event
		c.afterCatchUp = func() {
			if next.ID != uuid.Nil {
				return
			}
			var err error
			next, err = publishOneNow(env, uuid.Must(uuid.NewV7()))
			if err != nil {
				t.Error(err)
			}
		}
		env.start(c)
		env.waitFor("all applied", func() bool { return env.appliedCount(proj.Name()) == len(history)+1 })
		env.assertExactlyOnce(proj.Name(), append(history, next))
		if s := c.Stats(); s.Applied != 1 {
			t.Errorf("stats %+v: the event published during the catch-up should have come from Redis", s)
		}
	})
}

// publishOneNow appends an event and publishes it as soon as the log reader shows it; it may run
// outside the test goroutine.
func publishOneNow(env *pipeEnv, stream uuid.UUID) (eventstore.Event, error) {
	ctx := context.Background()
	rec, err := eventstore.Append(ctx, env.db, eventstore.Stream{ID: stream, Type: "test"}, 0,
		[]eventstore.NewEvent{{Type: "test.happened", SchemaVersion: 1, Data: json.RawMessage(`{}`), OccurredAt: time.Now()}})
	if err != nil {
		return eventstore.Event{}, err
	}
	e := rec[0]
	for deadline := time.Now().Add(30 * time.Second); ; {
		after := eventstore.Position{TransactionID: e.Position.TransactionID, GlobalPosition: e.Position.GlobalPosition - 1}
		got, err := eventstore.ReadAll(ctx, env.db, after, 1)
		if err != nil {
			return e, err
		}
		if len(got) == 1 && got[0].ID == e.ID {
			e = got[0]
			break
		}
		if time.Now().After(deadline) {
			return e, errors.New("event never became visible")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e, env.rdb.XAdd(ctx, &redis.XAddArgs{Stream: env.streams.Key(env.streams.Partition(e.StreamID)),
		ID: EntryID(e.Position), Values: Encode(e)}).Err()
}

func entryPosition(t *testing.T, id string) eventstore.Position {
	t.Helper()
	pos, err := ParseEntryID(id)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// TestCatchUpEndsWhereRedisTakesOver: Redis was emptied while the projector lagged, and
// commands keep appending (the relay publishing each to the emptied streams) faster than the
// catch-up applies: every event the catch-up applies brings a new one. The catch-up must stop
// where the streams begin, create the groups and take the rest from Redis. Catching up "until
// the store has nothing more" never ended under such a load (TestChaosRedisEmptied: the
// invoices projector was still catching up, with no group, when the load stopped 40 s later,
// and the pipeline status counted the missing group as lag 0).
func TestCatchUpEndsWhereRedisTakesOver(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 2)
	proj := newPipeProjector(t, env.db, "under-load")
	ctx := context.Background()

	// What Redis lost: the history, never applied. What the relay published since: one event
	// per partition, the streams' first entries.
	history := env.visible(len(env.appendVersions(newStreamIDs(6), 1, 3)))
	var firsts []eventstore.Event
	for p := range env.streams.Partitions {
		firsts = append(firsts, env.appendOne(env.db, streamIDsIn(env.streams, p, 1)[0], 1))
	}
	published := env.visible(len(history) + len(firsts))
	env.publish(published[len(history):]...)

	// The load: each event applied while it runs appends a new one, which a relay of the
	// test's own publishes as soon as the log shows it.
	var loading atomic.Bool
	loading.Store(true)
	var loadEvents atomic.Int64
	proj.before = func(ctx context.Context, e eventstore.Event) error {
		if !loading.Load() {
			return nil
		}
		_, err := eventstore.Append(ctx, env.db, eventstore.Stream{ID: uuid.Must(uuid.NewV7()), Type: "test"}, 0,
			[]eventstore.NewEvent{{Type: "test.happened", SchemaVersion: 1, Data: json.RawMessage(`{}`), OccurredAt: time.Now()}})
		if err != nil {
			t.Errorf("load: %v", err)
			return nil
		}
		loadEvents.Add(1)
		return nil
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		pos := published[len(published)-1].Position
		for relayCtx.Err() == nil {
			events, err := eventstore.ReadAll(relayCtx, env.db, pos, 100)
			if err != nil {
				if relayCtx.Err() == nil {
					t.Errorf("relay: %v", err)
				}
				return
			}
			for _, e := range events {
				pos = e.Position
				if err := env.rdb.XAdd(ctx, &redis.XAddArgs{Stream: env.streams.Key(env.streams.Partition(e.StreamID)),
					ID: EntryID(e.Position), Values: Encode(e)}).Err(); err != nil {
					t.Errorf("relay: publish %s: %v", EntryID(e.Position), err)
					return
				}
			}
			if len(events) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	defer func() { stopRelay(); <-relayDone }()

	c := env.consumer(proj, "c1", nil)
	env.start(c)
	deadline := time.Now().Add(15 * time.Second)
	for !env.groupsExist(proj.Name()) {
		if time.Now().After(deadline) {
			t.Fatalf("no consumer groups after 15 s under load: the catch-up never ended (stats %+v, %d load events)",
				c.Stats(), loadEvents.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The groups exist: the rest comes from Redis. Let a few load events go through it, then stop.
	env.waitFor("load events applied from Redis", func() bool { return c.Stats().Applied >= 10 })
	loading.Store(false)
	all := env.visible(len(published) + int(loadEvents.Load()))
	env.waitFor("everything applied", func() bool { return env.appliedCount(proj.Name()) == len(all) })
	env.assertExactlyOnce(proj.Name(), all)
	if s := c.Stats(); s.CaughtUp != int64(len(history)) || s.DeadLettered != 0 {
		t.Errorf("stats %+v: want exactly the %d events Redis lost from the store, the rest from Redis", s, len(history))
	}
}

// groupsExist reports whether group exists on every partition.
func (env *pipeEnv) groupsExist(group string) bool {
	for p := range env.streams.Partitions {
		groups, err := env.rdb.XInfoGroups(context.Background(), env.streams.Key(p)).Result()
		if err != nil || !containsGroup(groups, group) {
			return false
		}
	}
	return true
}

// TestLagCountsAMissingGroupFromTheStore: where Redis lost a group, what the projector has left
// to apply is in the store after its checkpoint; counting the missing group as nothing said
// "lag 0" while a projector was catching up 40 s behind (TestChaosRedisEmptied).
func TestLagCountsAMissingGroupFromTheStore(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 2)
	proj := newPipeProjector(t, env.db, "lag")
	ctx := context.Background()
	lag := func() GroupLag {
		t.Helper()
		l, err := Lag(ctx, env.db, env.rdb, env.streams, proj.Name(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	history := env.visible(len(env.appendVersions(newStreamIDs(4), 1, 2)))
	if l := lag(); l.Undelivered != int64(len(history)) {
		t.Errorf("before any group: %+v, want the %d stored events undelivered", l, len(history))
	}
	c := env.consumer(proj, "c1", nil)
	r := env.start(c)
	env.waitGroups(proj.Name())
	env.waitFor("the history applied", func() bool { return env.appliedCount(proj.Name()) == len(history) })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if l := lag(); l.Undelivered != 0 || l.Pending != 0 {
		t.Errorf("caught up: %+v, want nothing behind", l)
	}
	env.flush()
	if l := lag(); l.Undelivered != 0 {
		t.Errorf("groups lost, nothing new: %+v, want nothing behind", l)
	}
	env.visible(len(history) + len(env.appendVersions(newStreamIDs(3), 1, 1)))
	if l := lag(); l.Undelivered != 3 {
		t.Errorf("groups lost, 3 new events: %+v, want 3 undelivered", l)
	}
}

// TestLagCountsWhatRedisCannot: a group created at an entry id of the consumer's choosing (as a
// catch-up creates it) has a lag Redis cannot tell (XINFO GROUPS: lag NULL) until it reads to the
// stream's end. Lag counts the entries after its last delivered one from the store instead of
// taking them as none (which let the fault suite settle with entries still unread).
func TestLagCountsWhatRedisCannot(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 2)
	proj := newPipeProjector(t, env.db, "lag-unknown")
	ctx := context.Background()
	// Two streams per partition, each of three events: every partition has entries past its second.
	var ids []uuid.UUID
	per := map[int]int{}
	for len(ids) < 4 {
		if id := newStreamIDs(1)[0]; per[env.streams.Partition(id)] < 2 {
			per[env.streams.Partition(id)]++
			ids = append(ids, id)
		}
	}
	events := env.visible(len(env.appendVersions(ids, 1, 3)))
	env.publish(events...)
	want := int64(len(events))
	for p := range env.streams.Partitions {
		key := env.streams.Key(p)
		// At its second entry: Redis can tell the lag of a group created at the first or the last.
		head, err := env.rdb.XRangeN(ctx, key, "-", "+", 2).Result()
		if err != nil || len(head) < 2 {
			t.Fatalf("partition %d: %v %v", p, head, err)
		}
		if err := env.rdb.XGroupCreate(ctx, key, proj.Name(), head[1].ID).Err(); err != nil {
			t.Fatal(err)
		}
		want -= 2 // counted as delivered
		groups, err := env.rdb.XInfoGroups(ctx, key).Result()
		if err != nil || len(groups) != 1 || groups[0].Lag != -1 {
			t.Fatalf("partition %d: groups %+v (%v): want one whose lag Redis cannot tell, or this test proves nothing", p, groups, err)
		}
	}
	l, err := Lag(ctx, env.db, env.rdb, env.streams, proj.Name(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if l.Undelivered != want || l.Oldest <= 0 {
		t.Errorf("lag %+v, want %d undelivered and the oldest's age", l, want)
	}
}

// TestCatchUpAfterRedisEmptiedAgain: the catch-up stops where the streams began when it
// started; if Redis is emptied again before the groups are created, those streams are gone, and
// what the relay had published to them (after where the catch-up stopped) is in neither the
// read model nor Redis. The consumer must notice and catch up again, not create its groups on
// the emptied Redis and wait for a periodic gap check (TestChaosRedisEmptied, FLUSHALL and
// restart 0.7 s apart).
func TestCatchUpAfterRedisEmptiedAgain(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 2)
	proj := newPipeProjector(t, env.db, "emptied-again")

	history := env.visible(len(env.appendVersions(newStreamIDs(4), 1, 2))) // lost with the first emptying
	var published []eventstore.Event                                       // since: the streams' first entries, and more
	for p := range env.streams.Partitions {
		published = append(published, env.appendOne(env.db, streamIDsIn(env.streams, p, 1)[0], 1))
	}
	published = append(published, env.appendVersions(newStreamIDs(4), 1, 1)...)
	all := env.visible(len(history) + len(published))
	env.publish(all[len(history):]...)

	c := env.consumer(proj, "c1", nil) // MinIdle 30 s: the periodic gap check comes at the start, then in 15 s
	emptied := false
	c.afterCatchUp = func() {
		if !emptied {
			emptied = true
			env.flush() // Redis restarted empty between the catch-up and the creation of the groups
		}
	}
	env.start(c)
	env.waitGroups(proj.Name())
	polls := c.polls.Load()
	env.waitFor("the gap check at the start", func() bool { return c.polls.Load() > polls+3 })

	// The relay publishes new events (of other streams) to the emptied Redis.
	later := env.appendVersions(newStreamIDs(2), 1, 1)
	all = env.visible(len(all) + len(later))
	env.publish(all[len(all)-len(later):]...)
	env.waitFor("the later events applied", func() bool {
		for _, e := range later {
			if !env.isApplied(proj.Name(), e.ID) {
				return false
			}
		}
		return true
	})
	if n := env.appliedCount(proj.Name()); n != len(all) {
		t.Fatalf("%d of %d events applied: what Redis lost the second time was not caught up (stats %+v)", n, len(all), c.Stats())
	}
	env.assertExactlyOnce(proj.Name(), all)
}
