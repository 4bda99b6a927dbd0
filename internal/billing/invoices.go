package billing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// issueInvoice numbers the invoice in its customer's series, applies the customer's credit and
// appends both events, scheduling its collection: all in tx, so the series has no gaps (a
// rolled-back transaction takes no number) and no duplicates (the customer stream's expected
// version).
func issueInvoice(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, req domain.InvoiceRequest, at time.Time) (domain.Invoice, error) {
	customer, err := eventstore.LoadCustomer(ctx, tx, req.CustomerID)
	if err != nil {
		return domain.Invoice{}, err
	}
	issued, created, err := domain.IssueInvoice(customer, req, at)
	if err != nil {
		return domain.Invoice{}, err
	}
	id, err := uuid.Parse(req.InvoiceID)
	if err != nil {
		return domain.Invoice{}, fmt.Errorf("invoice id %q: %w", req.InvoiceID, err)
	}
	if err := appendEvents(ctx, tx, eventstore.CustomerStream, eventstore.CustomerStreamID(req.CustomerID),
		customer.Version, meta, issued); err != nil {
		return domain.Invoice{}, err
	}
	if err := appendEvents(ctx, tx, eventstore.InvoiceStream, id, 0, meta, created); err != nil {
		return domain.Invoice{}, err
	}
	inv := domain.EvolveInvoice(domain.Invoice{}, created)
	return inv, scheduleInvoice(ctx, tx, id, inv)
}

// appendInvoice appends events to an invoice at its version and reschedules its collection.
func appendInvoice(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, inv domain.Invoice, events ...domain.Event) (domain.Invoice, error) {
	id, err := uuid.Parse(inv.InvoiceID)
	if err != nil {
		return inv, fmt.Errorf("invoice id %q: %w", inv.InvoiceID, err)
	}
	if err := appendEvents(ctx, tx, eventstore.InvoiceStream, id, inv.Version, meta, events...); err != nil {
		return inv, err
	}
	for _, e := range events {
		inv = domain.EvolveInvoice(inv, e)
	}
	return inv, scheduleInvoice(ctx, tx, id, inv)
}

// voidInvoice voids inv (after any refund, in the same events) and gives back the credit it used.
func voidInvoice(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, inv domain.Invoice, reason string, at time.Time,
	before ...domain.Event) (domain.Invoice, error) {
	events := append(before, domain.InvoiceVoided{Reason: reason, VoidedAt: at})
	inv, err := appendInvoice(ctx, tx, meta, inv, events...)
	if err != nil {
		return inv, err
	}
	customer, err := eventstore.LoadCustomer(ctx, tx, inv.CustomerID)
	if err != nil {
		return inv, err
	}
	if credit, ok := domain.ReturnCredit(customer, inv, at); ok {
		err = appendEvents(ctx, tx, eventstore.CustomerStream, eventstore.CustomerStreamID(inv.CustomerID),
			customer.Version, meta, credit)
	}
	return inv, err
}

// periodLine is the invoice line of a whole period of plan × seats.
func periodLine(plan domain.PlanTerms, seats int64, start, end time.Time) domain.InvoiceLine {
	return domain.InvoiceLine{
		Description: fmt.Sprintf("%d × %s", seats, plan.Name),
		Amount:      plan.UnitAmount * seats, // bounded by MaxUnitAmount × MaxSeats, within int64
		Quantity:    seats,
		UnitAmount:  plan.UnitAmount,
		PeriodStart: start,
		PeriodEnd:   end,
		PlanID:      plan.PlanID,
	}
}

// periodInvoice is the request for the invoice of sub's current period.
func periodInvoice(sub domain.Subscription, invoiceID string, reason domain.InvoiceReason) domain.InvoiceRequest {
	return domain.InvoiceRequest{
		InvoiceID: invoiceID, SubscriptionID: sub.ID, CustomerID: sub.CustomerID, Currency: sub.Plan.Currency,
		Reason: reason, Lines: []domain.InvoiceLine{periodLine(sub.Plan, sub.Seats, sub.PeriodStart, sub.PeriodEnd)},
		PeriodStart: sub.PeriodStart, PeriodEnd: sub.PeriodEnd,
	}
}

// AfterSubscriptionChange does, in the transaction of a subscription command, what billing owes
// the events the command appended: the first invoice of a subscription created without a trial,
// a credit invoice for a change whose proration is negative (the credit goes to the customer's
// balance), and the subscription's schedule. A change that costs money never gets here: it goes
// through StartUpgrade.
func AfterSubscriptionChange(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, sub domain.Subscription, events []domain.Event) error {
	for _, e := range events {
		var err error
		switch e := e.(type) {
		case domain.SubscriptionCreated:
			if e.Status == domain.StatusActive {
				_, err = issueInvoice(ctx, tx, meta, periodInvoice(sub, uuid.Must(uuid.NewV7()).String(), domain.InvoiceForCreate), e.CreatedAt)
			}
		case domain.PlanChanged:
			err = creditInvoice(ctx, tx, meta, sub, e.Proration, e.ChangedAt)
		case domain.SeatsChanged:
			err = creditInvoice(ctx, tx, meta, sub, e.Proration, e.ChangedAt)
		}
		if err != nil {
			return err
		}
	}
	id, err := uuid.Parse(sub.ID)
	if err != nil {
		return fmt.Errorf("subscription id %q: %w", sub.ID, err)
	}
	return ScheduleSubscription(ctx, tx, id, sub)
}

// creditInvoice issues the invoice of a change whose proration totals less than zero.
func creditInvoice(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, sub domain.Subscription, lines []domain.ProrationLine, at time.Time) error {
	var total int64
	for _, l := range lines {
		total += l.Amount
	}
	switch {
	case total > 0:
		return fmt.Errorf("a change costing %d must go through the upgrade saga", total)
	case total == 0:
		return nil
	}
	req := domain.InvoiceRequest{InvoiceID: uuid.Must(uuid.NewV7()).String(), SubscriptionID: sub.ID,
		CustomerID: sub.CustomerID, Currency: sub.Plan.Currency, Reason: domain.InvoiceForUpdate, Lines: lines,
		PeriodStart: lines[0].PeriodStart, PeriodEnd: lines[0].PeriodEnd}
	_, err := issueInvoice(ctx, tx, meta, req, at)
	return err
}
