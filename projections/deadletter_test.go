package projections

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/internal/testenv"
)

// TestRedriveLoadsTheEventFromTheStore: entries whose payload is broken cannot be applied and are
// dead-lettered with the decoding error; Redrive applies the event the store holds (found by its
// event id, or by the position the entry id is when even that is broken), not the copy.
func TestRedriveLoadsTheEventFromTheStore(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 1)
	proj := newPipeProjector(t, env.db, "broken-envelope")
	c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 2 })
	r := env.start(c)
	env.waitGroups(proj.Name())
	events := env.visible(len(env.appendVersions(newStreamIDs(3), 1, 1)))

	ctx := context.Background()
	for i, e := range events {
		values := Encode(e)
		switch i {
		case 0:
			delete(values, "data") // the event id is still there
		case 1:
			values["event_id"] = "not-a-uuid" // only the entry id (the position) is left
		}
		if err := env.rdb.XAdd(ctx, &redis.XAddArgs{Stream: env.streams.Key(0), ID: EntryID(e.Position), Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	env.waitFor("two dead letters and the intact event applied", func() bool {
		return env.deadLetterCount(proj.Name()) == 2 && env.isApplied(proj.Name(), events[2].ID)
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	dead, err := ListDeadLetters(ctx, env.db, proj.Name(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].EventID != events[0].ID || !strings.Contains(dead[0].Error, "field type/data") ||
		dead[0].Deliveries != 2 || dead[0].EntryID != EntryID(events[0].Position) {
		t.Fatalf("first dead letter (limit 1): %+v", dead)
	}
	all, err := ListDeadLetters(ctx, env.db, proj.Name(), 0)
	if err != nil || len(all) != 2 || all[1].EntryID != EntryID(events[1].Position) || all[1].EventID != uuid.Nil ||
		!strings.Contains(all[1].Error, "event_id") {
		t.Fatalf("all dead letters: %+v, %v", all, err)
	}

	results, err := Redrive(ctx, env.db, proj)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		if res.Err != nil || !res.Applied {
			t.Errorf("redrive %d: applied %v, %v", res.ID, res.Applied, res.Err)
		}
	}
	env.assertExactlyOnce(proj.Name(), events)
	if n := env.deadLetterCount(proj.Name()); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}

// TestDeadLetterSurvivesRedisLoss: once an entry is dead-lettered the partition's checkpoint
// passes its event, so a catch-up after Redis is emptied does not bring it back; the dead letter
// must still be listed and counted then, and its redrive must put the event in the read model.
func TestDeadLetterSurvivesRedisLoss(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 1)
	proj := newPipeProjector(t, env.db, "survives-redis")
	r := env.start(env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 2 }))
	env.waitGroups(proj.Name())
	ctx := context.Background()

	poison := env.visible(len(env.appendVersions(newStreamIDs(1), 1, 1)))[0]
	proj.failOn(poison.ID, errors.New("poison"))
	env.publish(poison)
	env.waitFor("the entry dead-lettered and acknowledged", func() bool {
		return env.deadLetterCount(proj.Name()) == 1 && env.pending(proj.Name()) == 0
	})
	later := env.appendVersions(newStreamIDs(1), 1, 1)[0]
	events := env.visible(2)
	env.publish(later)
	env.waitFor("a later event applied and the checkpoint past the dead letter", func() bool {
		cp, err := Checkpoint(ctx, env.db, proj.Name(), 0)
		return err == nil && env.isApplied(proj.Name(), later.ID) && poison.Position.Before(cp)
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	env.flush()
	dead, err := ListDeadLetters(ctx, env.db, proj.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].EventID != poison.ID || dead[0].EntryID != EntryID(poison.Position) {
		t.Fatalf("dead letters after Redis was emptied: %+v, want the poisoned event's", dead)
	}
	lag, err := Lag(ctx, env.db, env.rdb, env.streams, proj.Name(), time.Now())
	if err != nil || lag.DeadLetters != 1 {
		t.Errorf("lag after Redis was emptied: %+v, %v; want 1 dead letter", lag, err)
	}

	// The projector is fixed and restarts on the emptied Redis: its catch-up starts after the
	// checkpoint, so the dead letter's row is the only way back for the event.
	proj.fix(poison.ID)
	c := env.consumer(proj, "c1", nil)
	env.start(c)
	env.waitGroups(proj.Name())
	if c.Stats().CatchUps == 0 {
		t.Fatal("the restarted consumer did not catch up from the store")
	}
	if env.isApplied(proj.Name(), poison.ID) {
		t.Fatal("the catch-up applied the dead-lettered event: the checkpoint had not passed it, so this test shows nothing")
	}
	results, err := Redrive(ctx, env.db, proj)
	if err != nil || len(results) != 1 || results[0].Err != nil || !results[0].Applied {
		t.Fatalf("redrive after Redis was emptied: %+v, %v", results, err)
	}
	env.assertExactlyOnce(proj.Name(), events)
	if n := env.deadLetterCount(proj.Name()); n != 0 {
		t.Errorf("%d dead letters left after the redrive", n)
	}
}

// TestDeadLetteringAgainUpdatesTheRow: a crash between recording a dead letter and acknowledging
// its entry redelivers the entry, which is dead-lettered again; that must leave one row, with the
// later failure, not two (nor fail on the unique key and leave the entry pending for good).
func TestDeadLetteringAgainUpdatesTheRow(t *testing.T) {
	t.Parallel()
	db := testenv.PostgresWithConns(t, 2)
	ctx := context.Background()
	failed := time.Now().UTC().Truncate(time.Microsecond)
	first := DeadLetter{Group: "twice", Partition: 1, EntryID: "100-7", EventID: uuid.New(), Type: "test.happened",
		StreamID: uuid.New(), Version: 3, Error: "first failure", Deliveries: 5, FailedAt: failed}
	second := first
	second.Error, second.Deliveries, second.FailedAt = "second failure", 8, failed.Add(time.Minute)
	for _, d := range []DeadLetter{first, second} {
		if err := recordDeadLetter(ctx, db, d); err != nil {
			t.Fatal(err)
		}
	}
	dead, err := ListDeadLetters(ctx, db, "twice", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 {
		t.Fatalf("got %d rows, want 1: %+v", len(dead), dead)
	}
	got := dead[0]
	got.ID = 0
	got.FailedAt = got.FailedAt.UTC()
	if got != second {
		t.Errorf("got %+v\nwant %+v", got, second)
	}
}

// TestDeadLetterOfAnUnstorableEntry: a broken entry may carry what a text column refuses (NUL
// bytes, invalid UTF-8); its dead letter must still be recorded, or the entry stays pending and
// failing for good.
func TestDeadLetterOfAnUnstorableEntry(t *testing.T) {
	t.Parallel()
	db := testenv.PostgresWithConns(t, 2)
	ctx := context.Background()
	m := redis.XMessage{ID: "5-9", Values: map[string]any{"type": "bad\x00type\xff", "event_id": "nope", "version": "x"}}
	d := entryDeadLetter("unstorable", 0, m, errors.New("broken: \x00\xfe"), 3, time.Now())
	if err := recordDeadLetter(ctx, db, d); err != nil {
		t.Fatalf("record: %v", err)
	}
	dead, err := ListDeadLetters(ctx, db, "unstorable", 0)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters: %+v, %v", dead, err)
	}
	if got := dead[0]; got.Type != "bad\uFFFDtype\uFFFD" || got.Error != "broken: \uFFFD\uFFFD" ||
		got.EventID != uuid.Nil || got.Version != 0 || got.EntryID != "5-9" {
		t.Errorf("got %+v", got)
	}
}

// TestDeadLetterIsAcknowledgedOnlyOnceRecorded: while PostgreSQL refuses the dead letter's row
// the entry must stay pending (acknowledging it would let the checkpoint pass an event recorded
// nowhere); once the row goes in, the entry is acknowledged.
func TestDeadLetterIsAcknowledgedOnlyOnceRecorded(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 1)
	proj := newPipeProjector(t, env.db, "unrecorded")
	ctx := context.Background()
	if _, err := env.db.Exec(ctx, `ALTER TABLE projection_dead_letters RENAME TO projection_dead_letters_away`); err != nil {
		t.Fatal(err)
	}
	c := env.consumer(proj, "c1", func(cfg *ConsumerConfig) { cfg.MaxDeliveries = 2 })
	env.start(c)
	env.waitGroups(proj.Name())
	poison := env.visible(len(env.appendVersions(newStreamIDs(1), 1, 1)))[0]
	proj.failOn(poison.ID, errors.New("poison"))
	env.publish(poison)

	key := env.streams.Key(0)
	var deliveries int64
	env.waitFor("several deliveries past MaxDeliveries, or the entry acknowledged", func() bool {
		pend, err := env.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: proj.Name(), Start: "-", End: "+", Count: 10}).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(pend) == 0 {
			return true
		}
		deliveries = pend[0].RetryCount
		return deliveries > 4
	})
	if n := env.pending(proj.Name()); n != 1 || c.Stats().DeadLettered != 0 {
		t.Fatalf("%d pending, stats %+v: the entry was acknowledged without its dead letter's row", n, c.Stats())
	}

	if _, err := env.db.Exec(ctx, `ALTER TABLE projection_dead_letters_away RENAME TO projection_dead_letters`); err != nil {
		t.Fatal(err)
	}
	env.waitFor("the dead letter recorded and acknowledged", func() bool {
		return env.deadLetterCount(proj.Name()) == 1 && env.pending(proj.Name()) == 0
	})
	dead, err := ListDeadLetters(ctx, env.db, proj.Name(), 0)
	if err != nil || len(dead) != 1 || dead[0].EventID != poison.ID || dead[0].Deliveries < deliveries {
		t.Errorf("dead letters %+v (%v): want the poisoned event's, delivered at least %d times", dead, err, deliveries)
	}
	if s := c.Stats(); s.DeadLettered != 1 {
		t.Errorf("stats %+v: want 1 dead-lettered", s)
	}
}
