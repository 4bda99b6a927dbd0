package billing

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/payments"
	"github.com/billing-oss/billing/internal/testenv"
)

// start is Saturday 31 January 2026, 10:00 UTC: a month-end anchor, on purpose.
var start = time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)

// clock is a frozen, settable service clock shared by a test's services.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// env is one test's billing service over a fresh database, with the sandbox gateway.
type env struct {
	t     *testing.T
	db    *pgxpool.Pool
	clock *clock
	gw    *payments.Sandbox
	svc   *Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := testenv.Postgres(t)
	e := &env{t: t, db: db, clock: &clock{now: start}, gw: payments.NewSandbox(db)}
	e.svc = e.process(db)
	return e
}

// process is another billingd process's service over the same database and clock.
func (e *env) process(db *pgxpool.Pool) *Service {
	return New(Config{DB: db, Gateway: payments.NewSandbox(db), Clock: e.clock})
}

// create creates a subscription as the API does: the command's events and what billing owes them
// in one transaction.
func (e *env) create(customer, planID string, seats int64, paymentMethod string, trialDays int) uuid.UUID {
	e.t.Helper()
	plan, err := domain.DefaultCatalog().Plan(planID)
	if err != nil {
		e.t.Fatal(err)
	}
	id := uuid.Must(uuid.NewV7())
	e.command(id, domain.Create{SubscriptionID: id.String(), CustomerID: customer, Plan: plan, Seats: seats,
		TrialDays: &trialDays, PaymentMethod: paymentMethod})
	return id
}

// command runs a command as the API does; a paid change starts an upgrade saga, returned (and not
// driven) so the test decides how to drive it.
func (e *env) command(id uuid.UUID, cmd domain.Command) (upgrade uuid.UUID) {
	e.t.Helper()
	ctx := context.Background()
	meta := eventstore.Metadata{Actor: "test", CorrelationID: uuid.NewString()}
	err := pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		sub, _, err := eventstore.LoadSubscriptionWithSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		events, err := domain.Decide(sub, cmd, e.clock.Now())
		if err != nil {
			return err
		}
		if change, amount, ok := domain.PaidChange(events); ok {
			upgrade, err = StartUpgrade(ctx, tx, meta, sub, change, amount, DefaultLease)
			return err
		}
		if err := appendEvents(ctx, tx, eventstore.SubscriptionStream, id, sub.Version, meta, events...); err != nil {
			return err
		}
		for _, ev := range events {
			sub = domain.Evolve(sub, ev)
		}
		return AfterSubscriptionChange(ctx, tx, meta, sub, events)
	})
	if err != nil {
		e.t.Fatalf("%T: %v", cmd, err)
	}
	return upgrade
}

// advance moves the clock to t and works through everything due.
func (e *env) advance(t time.Time) {
	e.t.Helper()
	e.clock.Set(t)
	if _, err := e.svc.RunDue(context.Background()); err != nil {
		e.t.Fatalf("run due: %v", err)
	}
}

func (e *env) subscription(id uuid.UUID) domain.Subscription {
	e.t.Helper()
	sub, _, err := eventstore.LoadSubscription(context.Background(), e.db, id, eventstore.LoadOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return sub
}

// invoices folds every invoice of a subscription from the store, in number order.
func (e *env) invoices(sub uuid.UUID) []domain.Invoice {
	e.t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT DISTINCT stream_id FROM events
		WHERE stream_type = 'invoice' AND type = 'invoice.created' AND data->>'subscription_id' = $1`, sub.String())
	if err != nil {
		e.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		e.t.Fatal(err)
	}
	var out []domain.Invoice
	for _, id := range ids {
		inv, err := eventstore.LoadInvoice(context.Background(), e.db, id)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, inv)
	}
	slices.SortFunc(out, func(a, b domain.Invoice) int { return int(a.CreatedAt.Sub(b.CreatedAt)) })
	return out
}

// eventTypes lists the types of a stream's events in order.
func (e *env) eventTypes(id uuid.UUID) []string {
	e.t.Helper()
	events, err := eventstore.Load(context.Background(), e.db, id, eventstore.LoadOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var types []string
	for _, ev := range events {
		types = append(types, ev.Type)
	}
	return types
}

// charged is what the gateway holds for a customer: charged minus refunded.
func (e *env) charged(customer string) int64 {
	e.t.Helper()
	charges, err := e.gw.Charges(context.Background(), customer)
	if err != nil {
		e.t.Fatal(err)
	}
	var net int64
	for _, c := range charges {
		if c.Status == domain.ChargeSucceeded {
			net += c.Amount - c.AmountRefunded
		}
	}
	return net
}
