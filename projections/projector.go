package projections

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/eventstore"
)

// Projector maintains one read model. The consumer calls Apply for each event of each stream
// exactly once and in version order: it checks and records the per-stream version in the same
// transaction (see Progress), so a redelivered event changes nothing twice.
type Projector interface {
	// Name is the projector's consumer group and the key of its progress.
	Name() string
	// Apply changes the read model for one event, inside tx. An error rolls the change back and
	// the event is retried (and, after enough deliveries, dead-lettered).
	Apply(ctx context.Context, tx pgx.Tx, e eventstore.Event) error
}

// streamFilter is a projector that reads only some types of stream. The events of the others
// are acknowledged (and their partition's checkpoint moved) with no work and leave no progress
// row: without it every projector kept a version for every stream of the store, three times the
// rows it needs at two streams' worth of events per subscription.
type streamFilter interface {
	Reads(streamType string) bool
}

// reads reports whether p reads streams of the given type: all of them, unless p says otherwise.
func reads(p Projector, streamType string) bool {
	f, ok := p.(streamFilter)
	return !ok || f.Reads(streamType)
}

// readBy returns the events p reads, in order.
func readBy(p Projector, events []eventstore.Event) []eventstore.Event {
	if _, ok := p.(streamFilter); !ok {
		return events
	}
	out := make([]eventstore.Event, 0, len(events))
	for _, e := range events {
		if reads(p, e.StreamType) {
			out = append(out, e)
		}
	}
	return out
}

// ErrOutOfOrder means an event arrived before its predecessor: it is retried rather than
// applied, so a gap never corrupts a read model.
var ErrOutOfOrder = errors.New("event arrived before its predecessor")
