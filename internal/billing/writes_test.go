package billing

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// invoiceRequest is a one-line invoice of amount for a customer.
func invoiceRequest(customer string, amount int64) domain.InvoiceRequest {
	return domain.InvoiceRequest{InvoiceID: uuid.Must(uuid.NewV7()).String(), SubscriptionID: uuid.NewString(),
		CustomerID: customer, Currency: "USD", Reason: domain.InvoiceForCreate,
		Lines:       []domain.InvoiceLine{{Description: "test", Amount: amount, Quantity: 1, UnitAmount: amount, PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0)}},
		PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0)}
}

// TestWritesChainCustomers: invoices of one customer queued in one Writes (as the commands of a
// batch do) take consecutive numbers from the state chained in memory, and a credit applied by
// one is gone for the next; QueueLoadCustomers reads what LoadCustomer reads, once per customer however
// often it is named.
func TestWritesChainCustomers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	meta := eventstore.Metadata{Actor: "test"}
	// cus_a has one invoice already, and a credit of 1000 from a credit invoice.
	if err := pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		if _, err := issueInvoice(ctx, tx, meta, invoiceRequest("cus_a", 500), start); err != nil {
			return err
		}
		_, err := issueInvoice(ctx, tx, meta, invoiceRequest("cus_a", -1000), start)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	var issued []domain.Invoice
	err := pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		w := NewWrites(tx)
		// A customer named twice (two commands of a batch) is read once.
		b := &pgx.Batch{}
		w.QueueLoadCustomers(b, []string{"cus_a", "cus_b", "cus_a"})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		for _, r := range []domain.InvoiceRequest{invoiceRequest("cus_a", 700), invoiceRequest("cus_b", 100), invoiceRequest("cus_a", 900)} {
			inv, err := w.issueInvoice(ctx, meta, r, start)
			if err != nil {
				return err
			}
			issued = append(issued, inv)
		}
		return w.Flush(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %d/%d, %s %d/%d, %s %d/%d", issued[0].Number, issued[0].CreditApplied, issued[0].Total,
		issued[1].Number, issued[1].CreditApplied, issued[1].Total, issued[2].Number, issued[2].CreditApplied, issued[2].Total)
	want := fmt.Sprintf("%s 700/0, %s 0/100, %s 300/600", domain.InvoiceNumber("cus_a", 3), domain.InvoiceNumber("cus_b", 1),
		domain.InvoiceNumber("cus_a", 4))
	if got != want {
		t.Errorf("invoices (number credit/total): %s, want %s", got, want)
	}
	var many map[string]domain.Customer
	b := &pgx.Batch{}
	eventstore.QueueLoadCustomers(b, []string{"cus_a", "cus_b", "cus_none", "cus_a"}, func(m map[string]domain.Customer) { many = m })
	if err := e.db.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"cus_a", "cus_b", "cus_none"} {
		one, err := eventstore.LoadCustomer(ctx, e.db, id)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(many[id]) != fmt.Sprint(one) {
			t.Errorf("QueueLoadCustomers[%s] = %+v, LoadCustomer = %+v", id, many[id], one)
		}
	}
	if a := many["cus_a"]; a.Invoices != 4 || a.Credit["USD"] != 0 || a.Version != 4 {
		t.Errorf("cus_a = %+v, want 4 invoices, no credit left, version 4", a)
	}
	var collect int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM billing_schedule WHERE kind = 'collect' AND stream_id = ANY($1)`,
		[]uuid.UUID{uuid.MustParse(issued[0].InvoiceID), uuid.MustParse(issued[1].InvoiceID), uuid.MustParse(issued[2].InvoiceID)}).Scan(&collect); err != nil {
		t.Fatal(err)
	}
	if collect != 2 { // the first is paid by credit: nothing to collect
		t.Errorf("%d collect rows for the batch's invoices, want 2", collect)
	}
}

// TestWritesStaleCustomer: a customer who was invoiced elsewhere after the Writes read it fails
// the flush with a concurrency error, and nothing of the Writes is stored.
func TestWritesStaleCustomer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	meta := eventstore.Metadata{Actor: "test"}
	tx, err := e.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	w := NewWrites(tx)
	b := &pgx.Batch{}
	w.QueueLoadCustomers(b, []string{"cus_a"})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	fresh := invoiceRequest("cus_b", 100)
	if _, err := w.issueInvoice(ctx, meta, fresh, start); err != nil {
		t.Fatal(err)
	}
	if _, err := w.issueInvoice(ctx, meta, invoiceRequest("cus_a", 100), start); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, e.db, func(other pgx.Tx) error {
		_, err := issueInvoice(ctx, other, meta, invoiceRequest("cus_a", 100), start)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("flush after the customer moved on: %v, want a concurrency error", err)
	}
	tx.Rollback(ctx)
	if v, err := eventstore.StreamVersion(ctx, e.db, uuid.MustParse(fresh.InvoiceID)); err != nil || v != 0 {
		t.Errorf("the other invoice of the refused flush is at version %d (%v), want 0", v, err)
	}
}
