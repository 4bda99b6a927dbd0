package projections

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
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
