package eventstore

import (
	"context"
	"log/slog"
)

// NotifyChannel is the LISTEN/NOTIFY channel that tells relays new events were committed.
const NotifyChannel = "billing_events"

// Notifier wakes the relay (in this or another process) after events are committed.
//
// It notifies after the commit, from its own statement, rather than from a trigger in the
// appending transaction: PostgreSQL serialises the commits of transactions that issued NOTIFY on
// one database-wide lock, held across the WAL flush, which would undo group commit under
// concurrent appends. A burst of appends coalesces into one NOTIFY in flight. A lost
// notification (a crash right after commit) only delays the relay until its next poll.
type Notifier struct {
	db      Querier
	pending chan struct{}
	log     *slog.Logger
}

// NewNotifier returns a Notifier; call Run to start it.
func NewNotifier(db Querier, log *slog.Logger) *Notifier {
	return &Notifier{db: db, pending: make(chan struct{}, 1), log: log}
}

// Notify asks for a notification without waiting for it.
func (n *Notifier) Notify() {
	select {
	case n.pending <- struct{}{}:
	default: // one is already pending; it will cover these events too
	}
}

// Run sends the notifications until ctx is done.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.pending:
			if _, err := n.db.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel); err != nil && ctx.Err() == nil {
				n.log.Warn("notify relay", "error", err)
			}
		}
	}
}
