// Package billing runs the processes that turn subscriptions into money: the first invoice of a
// subscription, renewals and trial conversions, payment collection with dunning, credits from
// downgrades, and the upgrade saga that charges for a change before applying it.
//
// Every step is one PostgreSQL transaction that appends the events of every aggregate it touches
// (subscription, invoice, customer, upgrade) under their expected versions, together with the
// billing_schedule rows those events make due. The only work outside a transaction is a call to
// the payment gateway, and every such call carries an idempotency key derived from the events
// (the invoice and its attempt number, the upgrade's id), so a process that dies between the call
// and the transaction that records it calls again and gets the same answer: money never moves
// twice and is never left unrecorded.
package billing

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// Clock is where billing's times come from (the service clock: a test clock in test mode).
type Clock interface {
	Now() time.Time
}

// Config is what the billing processes need.
type Config struct {
	DB      *pgxpool.Pool
	Gateway domain.PaymentGateway
	Clock   Clock
	Logger  *slog.Logger
	// Dunning is the retry schedule of failed payments (domain.DefaultDunningPolicy if zero).
	Dunning domain.DunningPolicy
	// CancelTrialWithoutPaymentMethod cancels a trial that ends without a payment method instead
	// of converting it (its first invoice then fails and goes through dunning).
	CancelTrialWithoutPaymentMethod bool
	// EntitlementsVisible reports whether the entitlements read model has folded the
	// subscription up to version; the upgrade saga completes only once it has.
	EntitlementsVisible func(ctx context.Context, subscriptionID uuid.UUID, version int64) (bool, error)
	// Committed, if set, is called after a transaction that appended events commits.
	Committed func()
	// Lease is how long a process holds billing work it took (a due schedule row, a step of an
	// upgrade saga) before another process may take it over: work held by a process that died,
	// or whose attempt failed, waits up to this long. DefaultLease if zero.
	Lease time.Duration
}

// DefaultLease is the lease of billing work unless configured otherwise.
const DefaultLease = 30 * time.Second

// Service runs the billing processes.
type Service struct {
	db        *pgxpool.Pool
	gateway   domain.PaymentGateway
	clock     Clock
	log       *slog.Logger
	dunning   domain.DunningPolicy
	cancelTrl bool
	visible   func(ctx context.Context, subscriptionID uuid.UUID, version int64) (bool, error)
	committed func()
	lease     time.Duration
	wake      chan struct{}
	// running serialises RunDue within the process. The scheduler loop and a test clock move
	// would otherwise share the due work, and the move (which answers when its RunDue returns)
	// could answer while the loop still holds some of it.
	running sync.Mutex

	// fault, when set (by tests only), is called at each step boundary of the upgrade saga and
	// of payment collection; an error it returns stops the work there, as a crash would.
	fault func(point string) error
}

// Lease is how long billing work a process took waits before another process takes it over.
func (s *Service) Lease() time.Duration { return s.lease }

// New returns the billing service.
func New(cfg Config) *Service {
	s := &Service{db: cfg.DB, gateway: cfg.Gateway, clock: cfg.Clock, log: cfg.Logger, dunning: cfg.Dunning,
		cancelTrl: cfg.CancelTrialWithoutPaymentMethod, visible: cfg.EntitlementsVisible,
		committed: cfg.Committed, lease: cfg.Lease, wake: make(chan struct{}, 1)}
	if s.lease <= 0 {
		s.lease = DefaultLease
	}
	if s.dunning.RetryDays == nil {
		s.dunning = domain.DefaultDunningPolicy
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.committed == nil {
		s.committed = func() {}
	}
	return s
}

// maxAttempts bounds how often a step is retried after losing a race on one of its streams.
const maxAttempts = 8

// inTx runs fn in a transaction, retrying it from the start when an append loses a race to a
// concurrent writer (every step re-reads what it decides on), and reports the commit.
func (s *Service) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.db, fn)
		if eventstore.Retryable(err) && attempt < maxAttempts {
			time.Sleep(time.Duration(attempt) * time.Millisecond)
			continue
		}
		if err == nil {
			s.committed()
		}
		return err
	}
}

// faultAt lets a test stop work at a named point (see Service.fault).
func (s *Service) faultAt(point string) error {
	if s.fault == nil {
		return nil
	}
	return s.fault(point)
}

// appendEvents appends domain events to one stream at the expected version.
func appendEvents(ctx context.Context, tx pgx.Tx, streamType string, id uuid.UUID, expected int64,
	meta eventstore.Metadata, events ...domain.Event) error {
	if len(events) == 0 {
		return nil
	}
	encoded, err := eventstore.EncodeEvents(events, meta)
	if err != nil {
		return err
	}
	_, err = eventstore.Append(ctx, tx, eventstore.Stream{ID: id, Type: streamType}, expected, encoded)
	return err
}

// appendSubscription decides cmd against sub at `at` and appends the result, returning the new
// state. A decision error is returned as is (callers ignore the harmless ones).
func appendSubscription(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, sub domain.Subscription,
	cmd domain.Command, at time.Time) (domain.Subscription, []domain.Event, error) {
	events, err := domain.Decide(sub, cmd, at)
	if err != nil {
		return sub, nil, err
	}
	id, err := uuid.Parse(sub.ID)
	if err != nil {
		return sub, nil, fmt.Errorf("subscription id %q: %w", sub.ID, err)
	}
	if err := appendEvents(ctx, tx, eventstore.SubscriptionStream, id, sub.Version, meta, events...); err != nil {
		return sub, nil, err
	}
	for _, e := range events {
		sub = domain.Evolve(sub, e)
	}
	return sub, events, nil
}

// later returns the later of two times: a step is dated when it was due, but never before the
// last event of the aggregate it changes.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// processMeta is the metadata of events a billing process appends on its own.
func processMeta(source, correlation string) eventstore.Metadata {
	return eventstore.Metadata{Actor: "billing", Source: source, CorrelationID: correlation}
}
