package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/billing"
)

// maxAttempts bounds how often a command is decided again after losing a race to a concurrent
// writer on the same subscription, before the client gets 409.
const maxAttempts = 5

// command is one write: decide against the subscription's current state, then describe the
// successful response from the new state and the events appended.
type command struct {
	subscriptionID uuid.UUID
	request        any // the decoded request, canonicalised into the idempotency fingerprint
	successStatus  int
	decide         func(s domain.Subscription, now time.Time) ([]domain.Event, error)
	respond        func(s domain.Subscription, events []domain.Event) any
	// paid: a decision that costs money now (domain.PaidChange) starts an upgrade saga instead
	// of being appended, and the response is the saga's outcome (see upgrades.go).
	paid bool
	// create: the subscription is new, so there is nothing to load and the command may share a
	// transaction with other creates (groupcommit.go); customerID is the customer it invoices.
	create     bool
	customerID string
}

// execute runs a command: load, decide, append with the expected version, in one transaction
// with the idempotency record. A concurrency conflict is decided again against fresh state.
func (a *API) execute(w http.ResponseWriter, r *http.Request, c command) {
	canonical, err := json.Marshal(c.request)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	idem, p := newIdempotency(r, canonical)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	for attempt := 1; ; attempt++ {
		var resp storedResponse
		var replayed bool
		if c.create && attempt == 1 && a.group != nil {
			resp, replayed, err = a.attemptInGroup(r, c, idem)
		} else {
			resp, replayed, err = a.attempt(r.Context(), r, c, idem)
		}
		if eventstore.Retryable(err) && attempt < maxAttempts {
			time.Sleep(time.Duration(rand.IntN(attempt*2000)) * time.Microsecond)
			continue
		}
		switch {
		case errors.Is(err, errKeyInFlight):
			writeProblem(w, r, problem(http.StatusConflict, "idempotency-key-in-flight", "Request in flight",
				"a request with this Idempotency-Key is still being processed; retry later"))
		case errors.Is(err, errKeyReused):
			writeProblem(w, r, problem(http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused",
				"this Idempotency-Key was already used with a different request"))
		case err != nil:
			a.fail(w, r, err)
		default:
			if replayed {
				w.Header().Set("Idempotent-Replayed", "true")
			}
			if c.paid && resp.status == http.StatusAccepted {
				a.driveUpgrade(w, r, c.subscriptionID, resp.body, replayed)
				return
			}
			contentType := "application/json"
			if resp.status >= 400 {
				contentType = "application/problem+json"
			}
			writeBody(w, resp.status, contentType, resp.body)
		}
		return
	}
}

// commandMeta is the metadata of the events a request appends.
func commandMeta(r *http.Request, idem *idempotency) eventstore.Metadata {
	ctx := r.Context()
	meta := eventstore.Metadata{
		CorrelationID: correlationID(ctx),
		CausationID:   requestID(ctx),
		Actor:         callerKey(ctx).Name,
		Source:        "api " + r.Method + " " + r.URL.Path,
	}
	if idem != nil {
		meta.IdempotencyKey = idem.key
	}
	return meta
}

// attempt is one transaction of execute. Rule violations are answers, not failures: their
// problem is returned as the response (and recorded under the idempotency key, so a retry
// gets the same answer).
func (a *API) attempt(ctx context.Context, r *http.Request, c command, idem *idempotency) (storedResponse, bool, error) {
	tx, err := a.db.Begin(ctx)
	if err != nil {
		return storedResponse{}, false, err
	}
	defer tx.Rollback(ctx)

	if idem != nil {
		claims, err := claimKeys(ctx, tx, []*idempotency{idem})
		if err != nil {
			return storedResponse{}, false, err
		}
		if claims[0].err != nil || claims[0].stored != nil {
			return deref(claims[0].stored), claims[0].stored != nil, claims[0].err
		}
	}

	// The latest snapshot plus the events after it: the same state as a full replay.
	sub, load, err := eventstore.LoadSubscriptionWithSnapshot(ctx, tx, c.subscriptionID)
	if err != nil {
		return storedResponse{}, false, err
	}
	if load.Ignored != nil {
		a.log.WarnContext(ctx, "snapshot ignored; state rebuilt from the events", "error", load.Ignored)
	}
	writes := billing.NewWrites(tx)
	o, err := a.decide(ctx, tx, writes, c, commandMeta(r, idem), sub)
	if err != nil {
		return storedResponse{}, false, err
	}
	var keys []*idempotency
	if idem != nil {
		keys = []*idempotency{idem}
	}
	if err := writes.FlushWith(ctx, func(b *pgx.Batch) { queueRecordKeys(b, keys, []storedResponse{o.resp}) }); err != nil {
		return storedResponse{}, false, err
	}
	if o.events != nil && load.ShouldSnapshot(a.snapshotEvery, len(o.events)) {
		a.saveSnapshot(ctx, tx, c.subscriptionID, o.sub)
	}
	if err := tx.Commit(ctx); err != nil {
		return storedResponse{}, false, err
	}
	if o.resp.status < 300 {
		a.committed()
	}
	a.countEvents(o)
	return o.resp, false, nil
}

// outcome is a command decided, its writes queued: the response, and the events to append with
// the state they lead to (none for a refusal or a saga's start).
type outcome struct {
	resp   storedResponse
	events []domain.Event
	sub    domain.Subscription
}

// decide decides c against sub and queues its writes in writes (a saga starts in tx at once).
// A rule violation is an outcome, answered with its problem; an error fails the transaction.
func (a *API) decide(ctx context.Context, tx pgx.Tx, writes *billing.Writes, c command, meta eventstore.Metadata,
	sub domain.Subscription) (outcome, error) {
	events, err := c.decide(sub, a.clock.Now())
	if err != nil {
		p := problemFor(err)
		if p == nil || p.Status >= 500 {
			return outcome{}, err
		}
		p.CorrelationID = meta.CorrelationID
		body, _ := json.Marshal(p)
		return outcome{resp: storedResponse{status: p.Status, body: body}}, nil
	}
	return a.record(ctx, tx, writes, c, meta, sub, events)
}

// record queues a decision's writes: a paid change starts its upgrade saga (202, the saga id as
// body); anything else is appended with what billing owes it (a first invoice, a credit, the
// schedule) and answered with c.respond.
func (a *API) record(ctx context.Context, tx pgx.Tx, writes *billing.Writes, c command, meta eventstore.Metadata,
	sub domain.Subscription, events []domain.Event) (outcome, error) {
	if change, amount, ok := domain.PaidChange(events); ok && c.paid {
		lease := billing.DefaultLease
		if a.billing != nil {
			lease = a.billing.Lease()
		}
		id, err := billing.StartUpgrade(ctx, tx, meta, sub, change, amount, lease)
		if err != nil {
			return outcome{}, err
		}
		body, err := json.Marshal(upgradeStartedJSON{UpgradeID: id.String()})
		return outcome{resp: storedResponse{status: http.StatusAccepted, body: body}}, err
	}
	if _, _, ok := domain.PaidChange(events); ok {
		return outcome{}, errors.New("a change that costs money must go through the upgrade saga")
	}
	if err := writes.Append(eventstore.SubscriptionStream, c.subscriptionID, sub.Version, meta, events...); err != nil {
		return outcome{}, err
	}
	for _, e := range events {
		sub = domain.Evolve(sub, e)
	}
	if err := writes.AfterSubscriptionChange(ctx, meta, sub, events); err != nil {
		return outcome{}, err
	}
	body, err := json.Marshal(c.respond(sub, events))
	return outcome{resp: storedResponse{status: c.successStatus, body: body}, events: events, sub: sub}, err
}

// countEvents counts a committed outcome's events in the metrics.
func (a *API) countEvents(o outcome) {
	for _, e := range o.events {
		a.metrics.eventAppended(e.EventType())
	}
}

// saveSnapshot saves the state a command just produced as its subscription's snapshot, in the
// command's transaction: it commits with the events or not at all, so it never describes a state
// that was not committed, and it costs one small upsert every SnapshotEvery events, on a row that
// only writers of this very stream (already serialised by the append) touch. It runs under a
// savepoint and only logs a failure: a snapshot is a cache and must never fail the command.
func (a *API) saveSnapshot(ctx context.Context, tx pgx.Tx, id uuid.UUID, sub domain.Subscription) {
	sp, err := tx.Begin(ctx) // SAVEPOINT
	if err == nil {
		if _, err = eventstore.SaveSubscriptionSnapshot(ctx, sp, id, sub); err == nil {
			err = sp.Commit(ctx) // RELEASE SAVEPOINT
		}
		if err != nil {
			_ = sp.Rollback(ctx) // ROLLBACK TO SAVEPOINT: the command's writes stay
		}
	}
	if err != nil {
		a.log.WarnContext(ctx, "snapshot not saved", "subscription_id", sub.ID, "version", sub.Version, "error", err)
	}
}

func deref(s *storedResponse) storedResponse {
	if s == nil {
		return storedResponse{}
	}
	return *s
}
