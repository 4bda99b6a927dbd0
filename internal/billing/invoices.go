package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// issueInvoice issues an invoice in tx at once (see Writes.issueInvoice).
func issueInvoice(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, req domain.InvoiceRequest, at time.Time) (domain.Invoice, error) {
	w := NewWrites(tx)
	inv, err := w.issueInvoice(ctx, meta, req, at)
	if err != nil {
		return inv, err
	}
	return inv, w.Flush(ctx)
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

// AfterSubscriptionChange writes in tx, at once, what billing owes the events a subscription
// command appended (see Writes.AfterSubscriptionChange).
func AfterSubscriptionChange(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, sub domain.Subscription, events []domain.Event) error {
	w := NewWrites(tx)
	if err := w.AfterSubscriptionChange(ctx, meta, sub, events); err != nil {
		return err
	}
	return w.Flush(ctx)
}
