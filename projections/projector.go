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

// ErrOutOfOrder means an event arrived before its predecessor: it is retried rather than
// applied, so a gap never corrupts a read model.
var ErrOutOfOrder = errors.New("event arrived before its predecessor")
