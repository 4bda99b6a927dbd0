package projections

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
)

// TestApplyBatchIsAllOrNothing: a batch applies duplicates as no-ops and moves the checkpoint;
// a batch with a failing event or a gap applies nothing at all, so the consumer can retry its
// entries one by one.
func TestApplyBatchIsAllOrNothing(t *testing.T) {
	t.Parallel()
	env := newPipeEnv(t, 1)
	ctx := context.Background()
	p := newPipeProjector(t, env.db, "batch")
	a, b := uuid.New(), uuid.New()
	events := env.appendVersions([]uuid.UUID{a, b}, 1, 3) // a1 b1 a2 b2 a3 b3

	if n, err := ApplyBatch(ctx, env.db, p, events[:2], nil); err != nil || n != 2 {
		t.Fatalf("first batch: %d applied, %v", n, err)
	}
	// Redelivered events in a batch are skipped, the new ones applied.
	if n, err := ApplyBatch(ctx, env.db, p, events[:4], []partitionPosition{{0, events[3].Position}}); err != nil || n != 2 {
		t.Fatalf("batch with duplicates: %d applied, %v; want 2", n, err)
	}
	if got, _ := Checkpoint(ctx, env.db, "batch", 0); got != events[3].Position {
		t.Errorf("checkpoint %v, want %v", got, events[3].Position)
	}

	// A gap in one stream fails the whole batch, including the other stream's good event.
	gap := append(events[4:5:5], env.appendOne(env.db, b, 4)) // a3, then b4 without b3
	if _, err := ApplyBatch(ctx, env.db, p, gap, []partitionPosition{{0, gap[1].Position}}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("batch with a gap: err %v, want ErrOutOfOrder", err)
	}
	boom := errors.New("boom")
	p.failOn(events[5].ID, boom)
	if _, err := ApplyBatch(ctx, env.db, p, events[4:6], []partitionPosition{{0, events[5].Position}}); !errors.Is(err, boom) {
		t.Fatalf("batch with a failing event: err %v", err)
	}
	if env.isApplied("batch", events[4].ID) || env.appliedCount("batch") != 4 {
		t.Errorf("a failed batch left %d events applied, want the 4 from before", env.appliedCount("batch"))
	}
	if got, _ := Checkpoint(ctx, env.db, "batch", 0); got != events[3].Position {
		t.Errorf("a failed batch moved the checkpoint to %v", got)
	}
}
