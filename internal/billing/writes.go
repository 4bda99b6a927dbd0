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

// Writes gathers what a transaction writes for billing, events under their streams' expected
// versions and billing_schedule rows, and sends them in two statements (eventstore.AppendMany and
// one schedule upsert), in one round trip, however many aggregates they touch. The commands of a
// group commit share one Writes: a customer's state then chains in memory from one command's
// invoice to the next (sequence n, then n+1), and the whole batch costs the same two statements.
type Writes struct {
	tx        pgx.Tx // where the writes go, and customers not loaded yet are read from
	appends   []eventstore.StreamAppend
	stream    map[uuid.UUID]int // stream id → its entry in appends
	schedule  []scheduleRow
	row       map[scheduleKey]int // → its entry in schedule
	customers map[string]domain.Customer
}

// NewWrites starts an empty set of writes to be flushed in tx, where its reads (customers) go too.
func NewWrites(tx pgx.Tx) *Writes {
	return &Writes{tx: tx, stream: map[uuid.UUID]int{}, row: map[scheduleKey]int{}, customers: map[string]domain.Customer{}}
}

// QueueLoadCustomers queues on b one query for the states of the customers not read yet, for the
// commands of a batch: it travels with the batch's other reads, and the states are here once b
// has been sent (in the transaction the writes will be flushed in).
func (w *Writes) QueueLoadCustomers(b *pgx.Batch, ids []string) {
	var missing []string
	for _, id := range ids {
		if _, ok := w.customers[id]; !ok {
			missing = append(missing, id)
		}
	}
	eventstore.QueueLoadCustomers(b, missing, func(loaded map[string]domain.Customer) {
		for id, c := range loaded {
			w.customers[id] = c
		}
	})
}

// customer is the customer's state including the writes pending here.
func (w *Writes) customer(ctx context.Context, id string) (domain.Customer, error) {
	if c, ok := w.customers[id]; ok {
		return c, nil
	}
	c, err := eventstore.LoadCustomer(ctx, w.tx, id)
	if err == nil {
		w.customers[id] = c
	}
	return c, err
}

// Append queues events for a stream that must be at version expected, counting the events
// already queued for it here.
func (w *Writes) Append(streamType string, id uuid.UUID, expected int64, meta eventstore.Metadata, events ...domain.Event) error {
	if len(events) == 0 {
		return nil
	}
	encoded, err := eventstore.EncodeEvents(events, meta)
	if err != nil {
		return err
	}
	i, ok := w.stream[id]
	if !ok {
		w.stream[id] = len(w.appends)
		w.appends = append(w.appends, eventstore.StreamAppend{Stream: eventstore.Stream{ID: id, Type: streamType}, Expected: expected})
		i = len(w.appends) - 1
	} else if queued := w.appends[i].Expected + int64(len(w.appends[i].Events)); queued != expected {
		return &eventstore.ConcurrencyError{StreamID: id, Expected: expected, Actual: queued}
	}
	w.appends[i].Events = append(w.appends[i].Events, encoded...)
	return nil
}

// setDue queues rows of billing_schedule: a row per (stream, kind) with a due time, none for one
// without. A later row for the same stream and kind replaces an earlier one.
func (w *Writes) setDue(rows ...scheduleRow) {
	for _, r := range rows {
		if i, ok := w.row[r.key]; ok {
			w.schedule[i] = r
			continue
		}
		w.row[r.key] = len(w.schedule)
		w.schedule = append(w.schedule, r)
	}
}

// Flush writes everything queued, in the transaction and in one round trip, and empties the set.
// The events go first: an append that lost a race fails with its *eventstore.ConcurrencyError.
func (w *Writes) Flush(ctx context.Context) error { return w.FlushWith(ctx, nil) }

// FlushWith is Flush with the caller's own statements, queued on the batch by also after the
// writes, travelling in the same round trip.
func (w *Writes) FlushWith(ctx context.Context, also func(*pgx.Batch)) error {
	b := &pgx.Batch{}
	appended, err := eventstore.QueueAppendMany(b, w.appends)
	if err != nil {
		return err
	}
	queueSetSchedule(b, w.schedule)
	if also != nil {
		also(b)
	}
	w.appends, w.schedule = nil, nil
	clear(w.stream)
	clear(w.row)
	if b.Len() > 0 {
		if err := w.tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	_, err = appended(ctx, w.tx)
	return err
}

// issueInvoice numbers the invoice in its customer's series, applies the customer's credit and
// queues both events, scheduling its collection. Flushed in one transaction, the series has no
// gaps (a rolled-back transaction takes no number) and no duplicates (the customer stream's
// expected version).
func (w *Writes) issueInvoice(ctx context.Context, meta eventstore.Metadata, req domain.InvoiceRequest, at time.Time) (domain.Invoice, error) {
	customer, err := w.customer(ctx, req.CustomerID)
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
	if err := w.Append(eventstore.CustomerStream, eventstore.CustomerStreamID(req.CustomerID), customer.Version, meta, issued); err != nil {
		return domain.Invoice{}, err
	}
	w.customers[req.CustomerID] = domain.EvolveCustomer(customer, issued)
	if err := w.Append(eventstore.InvoiceStream, id, 0, meta, created); err != nil {
		return domain.Invoice{}, err
	}
	inv := domain.EvolveInvoice(domain.Invoice{}, created)
	w.setDue(invoiceDue(id, inv))
	return inv, nil
}

// AfterSubscriptionChange queues what billing owes the events a subscription command appended:
// the first invoice of a subscription created without a trial, a credit invoice for a change
// whose proration is negative (the credit goes to the customer's balance), and the
// subscription's schedule. A change that costs money never gets here: it goes through
// StartUpgrade.
func (w *Writes) AfterSubscriptionChange(ctx context.Context, meta eventstore.Metadata, sub domain.Subscription, events []domain.Event) error {
	for _, e := range events {
		var err error
		switch e := e.(type) {
		case domain.SubscriptionCreated:
			if e.Status == domain.StatusActive {
				_, err = w.issueInvoice(ctx, meta, periodInvoice(sub, uuid.Must(uuid.NewV7()).String(), domain.InvoiceForCreate), e.CreatedAt)
			}
		case domain.PlanChanged:
			err = w.creditInvoice(ctx, meta, sub, e.Proration, e.ChangedAt)
		case domain.SeatsChanged:
			err = w.creditInvoice(ctx, meta, sub, e.Proration, e.ChangedAt)
		}
		if err != nil {
			return err
		}
	}
	id, err := uuid.Parse(sub.ID)
	if err != nil {
		return fmt.Errorf("subscription id %q: %w", sub.ID, err)
	}
	w.setDue(subscriptionDues(id, sub)...)
	return nil
}

// creditInvoice issues the invoice of a change whose proration totals less than zero.
func (w *Writes) creditInvoice(ctx context.Context, meta eventstore.Metadata, sub domain.Subscription, lines []domain.ProrationLine, at time.Time) error {
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
	_, err := w.issueInvoice(ctx, meta, req, at)
	return err
}
