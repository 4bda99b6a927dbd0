package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// The billing histories the read-model tests need, made with the domain's own functions and
// appended to the streams the billing processes use, so that the tests do not depend on those
// processes (built elsewhere) to exist.

// IssueInvoice numbers r in its customer's series (domain.IssueInvoice, against the customer's
// stream) and appends the customer's event and the invoice's in one transaction. r.InvoiceID
// is generated when empty. It returns the invoice's stream id.
func IssueInvoice(t testing.TB, db *pgxpool.Pool, r domain.InvoiceRequest, now time.Time) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	if r.InvoiceID == "" {
		r.InvoiceID = uuid.Must(uuid.NewV7()).String()
	}
	id := uuid.MustParse(r.InvoiceID)
	c, err := eventstore.LoadCustomer(ctx, db, r.CustomerID)
	if err != nil {
		t.Fatalf("load customer %s: %v", r.CustomerID, err)
	}
	issued, created, err := domain.IssueInvoice(c, r, now)
	if err != nil {
		t.Fatalf("issue invoice: %v", err)
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := appendEvents(ctx, tx, eventstore.Stream{ID: eventstore.CustomerStreamID(r.CustomerID), Type: eventstore.CustomerStream},
			c.Version, issued); err != nil {
			return err
		}
		return appendEvents(ctx, tx, eventstore.Stream{ID: id, Type: eventstore.InvoiceStream}, 0, created)
	})
	if err != nil {
		t.Fatalf("append invoice %s: %v", id, err)
	}
	return id
}

// AppendInvoiceEvents appends events to invoice id's stream at its current version.
func AppendInvoiceEvents(t testing.TB, db *pgxpool.Pool, id uuid.UUID, events ...domain.Event) {
	t.Helper()
	ctx := context.Background()
	inv, err := eventstore.LoadInvoice(ctx, db, id)
	if err != nil {
		t.Fatalf("load invoice %s: %v", id, err)
	}
	if err := appendEvents(ctx, db, eventstore.Stream{ID: id, Type: eventstore.InvoiceStream}, inv.Version, events...); err != nil {
		t.Fatalf("append to invoice %s: %v", id, err)
	}
}

// VoidInvoice voids invoice id and gives its customer back the credit it used, in one
// transaction (the order domain.InvoiceVoided describes).
func VoidInvoice(t testing.TB, db *pgxpool.Pool, id uuid.UUID, reason string, now time.Time) {
	t.Helper()
	ctx := context.Background()
	now = now.UTC().Truncate(time.Second)
	inv, err := eventstore.LoadInvoice(ctx, db, id)
	if err != nil {
		t.Fatalf("load invoice %s: %v", id, err)
	}
	c, err := eventstore.LoadCustomer(ctx, db, inv.CustomerID)
	if err != nil {
		t.Fatalf("load customer %s: %v", inv.CustomerID, err)
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := appendEvents(ctx, tx, eventstore.Stream{ID: id, Type: eventstore.InvoiceStream}, inv.Version,
			domain.InvoiceVoided{Reason: reason, VoidedAt: now}); err != nil {
			return err
		}
		if grant, ok := domain.ReturnCredit(c, inv, now); ok {
			return appendEvents(ctx, tx, eventstore.Stream{ID: eventstore.CustomerStreamID(inv.CustomerID), Type: eventstore.CustomerStream},
				c.Version, grant)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("void invoice %s: %v", id, err)
	}
}

// PayInvoice records a charge attempt on invoice id with domain.RecordPayment: succeeded for
// the whole total, or declined.
func PayInvoice(t testing.TB, db *pgxpool.Pool, id uuid.UUID, succeed bool, now time.Time) {
	t.Helper()
	inv, err := eventstore.LoadInvoice(context.Background(), db, id)
	if err != nil {
		t.Fatalf("load invoice %s: %v", id, err)
	}
	attempt := inv.Attempts + 1
	charge := domain.Charge{ID: fmt.Sprintf("ch_%s_%d", id.String()[:8], attempt), Status: domain.ChargeSucceeded,
		Amount: inv.Total, Currency: inv.Currency}
	if !succeed {
		charge.Status, charge.DeclineCode, charge.DeclineMessage = domain.ChargeDeclined, domain.DeclineCardDeclined, "Your card was declined."
	}
	e, err := domain.RecordPayment(inv, charge, attempt, domain.DefaultDunningPolicy, now)
	if err != nil {
		t.Fatalf("record payment on %s: %v", id, err)
	}
	AppendInvoiceEvents(t, db, id, e)
}

func appendEvents(ctx context.Context, q eventstore.Querier, stream eventstore.Stream, expected int64, events ...domain.Event) error {
	enc, err := eventstore.EncodeEvents(events, eventstore.Metadata{Source: "testenv billing"})
	if err != nil {
		return err
	}
	_, err = eventstore.Append(ctx, q, stream, expected, enc)
	return err
}

// PeriodLine is the invoice line of a whole period of s: what a renewal bills.
func PeriodLine(s domain.Subscription) domain.InvoiceLine {
	return domain.InvoiceLine{Description: fmt.Sprintf("%d × %s", s.Seats, s.Plan.Name),
		Amount: s.Plan.UnitAmount * s.Seats, Quantity: s.Seats, UnitAmount: s.Plan.UnitAmount,
		PeriodStart: s.PeriodStart, PeriodEnd: s.PeriodEnd, PlanID: s.Plan.PlanID}
}

// BillingWorkload drives random invoices through their lifecycle (issued with or without
// credit, paid, declined, refunded in part, voided with the credit given back, written off),
// for the tests that compare the billing read models with a fold of the log.
type BillingWorkload struct {
	DB       *pgxpool.Pool
	Rng      *rand.Rand
	Now      time.Time // moves forward with every step
	Invoices []uuid.UUID
}

// Step takes one random action on one of subs (subscription stream ids) or of the invoices
// issued so far. Actions the invoice's state does not allow are skipped.
func (w *BillingWorkload) Step(t testing.TB, subs []uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	w.Now = w.Now.Add(time.Duration(w.Rng.IntN(8*3600)+1) * time.Second)
	k := w.Rng.IntN(20)
	if len(w.Invoices) == 0 || k < 7 {
		if len(subs) == 0 {
			return
		}
		id := subs[w.Rng.IntN(len(subs))]
		s, _, err := eventstore.LoadSubscription(ctx, w.DB, id, eventstore.LoadOptions{})
		if err != nil || !s.Exists() {
			t.Fatalf("load subscription %s: %v (exists %t)", id, err, s.Exists())
		}
		r := domain.InvoiceRequest{SubscriptionID: id.String(), CustomerID: s.CustomerID, Currency: s.Plan.Currency,
			Reason: domain.InvoiceForCycle, Lines: []domain.InvoiceLine{PeriodLine(s)},
			PeriodStart: s.PeriodStart, PeriodEnd: s.PeriodEnd}
		if w.Rng.IntN(3) == 0 {
			// A plan change's proration: a credit for the unused time and a charge for the rest;
			// a downgrade's total is negative (a credit invoice).
			credit, charge := w.Rng.Int64N(5000)+1, w.Rng.Int64N(5000)+1
			r.Reason = domain.InvoiceForUpdate
			r.Lines = []domain.InvoiceLine{
				{Description: "Unused time", Amount: -credit, Quantity: s.Seats, UnitAmount: s.Plan.UnitAmount,
					PeriodStart: w.Now.UTC().Truncate(time.Second), PeriodEnd: s.PeriodEnd, Proration: true, PlanID: s.Plan.PlanID},
				{Description: "Remaining time", Amount: charge, Quantity: s.Seats, UnitAmount: s.Plan.UnitAmount,
					PeriodStart: w.Now.UTC().Truncate(time.Second), PeriodEnd: s.PeriodEnd, Proration: true, PlanID: s.Plan.PlanID},
			}
			if w.Rng.IntN(2) == 0 {
				r.UpgradeID = uuid.Must(uuid.NewV7()).String()
			}
		}
		w.Invoices = append(w.Invoices, IssueInvoice(t, w.DB, r, w.Now))
		return
	}
	id := w.Invoices[w.Rng.IntN(len(w.Invoices))]
	inv, err := eventstore.LoadInvoice(ctx, w.DB, id)
	if err != nil {
		t.Fatalf("load invoice %s: %v", id, err)
	}
	switch {
	case k < 13 && inv.Status == domain.InvoiceOpen:
		PayInvoice(t, w.DB, id, w.Rng.IntN(3) > 0, w.Now)
	case k < 16 && inv.AmountPaid > inv.AmountRefunded:
		AppendInvoiceEvents(t, w.DB, id, domain.InvoiceRefunded{RefundID: fmt.Sprintf("re_%d", w.Rng.Int64()),
			ChargeID: inv.ChargeID, Amount: w.Rng.Int64N(inv.AmountPaid-inv.AmountRefunded) + 1,
			RefundedAt: w.Now.UTC().Truncate(time.Second)})
	case k < 18 && (inv.Status == domain.InvoiceOpen || inv.Status == domain.InvoicePaid) && inv.Subtotal >= 0:
		// (The domain has no way to take a credit invoice's credit back, so none is voided.)
		VoidInvoice(t, w.DB, id, "test", w.Now)
	case k < 20 && inv.Status == domain.InvoiceOpen:
		AppendInvoiceEvents(t, w.DB, id, domain.InvoiceMarkedUncollectible{At: w.Now.UTC().Truncate(time.Second)})
	}
}
