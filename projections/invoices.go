package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// InvoicesName is the name of the invoices projector: its consumer group and the key of its
// progress.
const InvoicesName = "invoices"

// The live tables of the invoices read model (migration 000010).
const (
	InvoiceViewTable      = "invoice_view"
	InvoiceMovementsTable = "invoice_movements"
)

// Invoices maintains two tables in one transaction per event:
//
//   - invoice_view: one row per invoice, its columns for queries plus the whole folded
//     domain.Invoice as `state`. Apply is state = domain.EvolveInvoice(state, event), so the row
//     is exactly what eventstore.LoadInvoice returns for the same events.
//   - invoice_movements: one row per invoice event that changed a revenue figure (see the
//     migration), which is what lets the dashboard bucket money by the time it moved; a row
//     per invoice could only say where each invoice ended up.
//
// Events of other stream types are skipped. Like Subscriptions it is idempotent by the row's
// version on its own, and writes to its tables by name so Rebuild can swap fresh ones in.
type Invoices struct {
	view, movements string
	loadSQL         string
	upsertSQL       string
	movementSQL     string
}

// NewInvoices returns the projector over the live tables.
func NewInvoices() *Invoices { return newInvoices(InvoiceViewTable, InvoiceMovementsTable) }

func newInvoices(view, movements string) *Invoices {
	v, m := pgx.Identifier{view}.Sanitize(), pgx.Identifier{movements}.Sanitize()
	return &Invoices{
		view: view, movements: movements,
		loadSQL:   byKeySQL(v, "id", "id, state"),
		upsertSQL: upsertSQL(v, invoiceColumns),
		movementSQL: `INSERT INTO ` + m + ` (` + strings.Join(invoiceMovementColumns, ", ") + `) VALUES (` +
			placeholders(len(invoiceMovementColumns)) + `) ON CONFLICT (event_id) DO NOTHING`,
	}
}

// invoiceColumns are invoice_view's columns in the order invoiceValues gives them; id first.
var invoiceColumns = []string{"id", "number", "subscription_id", "customer_id", "currency", "status", "reason",
	"subtotal", "credit_applied", "total", "attempts", "amount_paid", "amount_refunded", "next_attempt_at",
	"period_start", "period_end", "created_at", "paid_at", "voided_at", "upgrade_id", "lines", "version",
	"updated_at", "state"}

var invoiceMovementColumns = []string{"event_id", "invoice_id", "version", "type", "subscription_id", "customer_id",
	"currency", "occurred_at", "invoiced", "collected", "refunded", "credit_granted", "credit_applied", "voided",
	"uncollectible", "outstanding"}

// Name implements Projector.
func (p *Invoices) Name() string { return InvoicesName }

// Reads reports that the projector reads only invoice streams.
func (p *Invoices) Reads(streamType string) bool { return streamType == eventstore.InvoiceStream }

// Tables implements Rebuildable: the tables this projector writes.
func (p *Invoices) Tables() []string { return []string{p.view, p.movements} }

// Into implements Rebuildable: the same projector writing to other tables.
func (p *Invoices) Into(tables map[string]string) Projector {
	return newInvoices(renamed(tables, p.view), renamed(tables, p.movements))
}

// Apply implements Projector.
func (p *Invoices) Apply(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	return p.applyBatch(ctx, tx, []eventstore.Event{e})
}

// applyBatch applies events (each stream's in version order) with one read of the rows they
// touch and one round trip of writes. Rebuild uses it for whole batches; Apply for one event.
func (p *Invoices) applyBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	batch := &pgx.Batch{}
	load := func(ids []uuid.UUID) (map[uuid.UUID]domain.Invoice, error) {
		return loadStates(ctx, tx, p.loadSQL, ids, DecodeInvoiceState)
	}
	movement := func(e eventstore.Event, before, after domain.Invoice) error {
		m, ok := invoiceMovement(e, before, after)
		if !ok {
			return nil
		}
		subID, err := uuid.Parse(after.SubscriptionID)
		if err != nil {
			return fmt.Errorf("%s: invoice %s: subscription id %q: %w", p.movements, e.StreamID, after.SubscriptionID, err)
		}
		batch.Queue(p.movementSQL, e.ID, e.StreamID, e.Version, e.Type, subID, after.CustomerID, after.Currency,
			e.OccurredAt, m.invoiced, m.collected, m.refunded, m.creditGranted, m.creditApplied, m.voided,
			m.uncollectible, m.outstanding)
		return nil
	}
	changed, states, err := foldBatch(events, eventstore.InvoiceStream, p.view, load, domain.EvolveInvoice,
		func(inv domain.Invoice) int64 { return inv.Version }, movement)
	if err != nil {
		return err
	}
	for _, id := range changed {
		values, err := invoiceValues(id, states[id])
		if err != nil {
			return fmt.Errorf("%s: %w", p.view, err)
		}
		batch.Queue(p.upsertSQL, values...)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("%s: write: %w", p.view, err)
	}
	return nil
}

// revenueMovement is one event's contribution to the revenue figures (invoice_movements).
type revenueMovement struct {
	invoiced, collected, refunded, creditGranted, creditApplied, voided, uncollectible, outstanding int64
}

// openAmount is what an invoice in this state is owed: its total while open, else nothing.
func openAmount(inv domain.Invoice) int64 {
	if inv.Status == domain.InvoiceOpen {
		return inv.Total
	}
	return 0
}

// invoiceMovement is what e, taking an invoice from before to after, contributes to the revenue
// figures; false when it contributes nothing (a declined attempt, say).
func invoiceMovement(e eventstore.Event, before, after domain.Invoice) (revenueMovement, bool) {
	m := revenueMovement{outstanding: openAmount(after) - openAmount(before)}
	switch e.Type {
	case domain.InvoiceCreated{}.EventType():
		// A credit invoice (negative subtotal) applies a negative credit: it adds to the balance.
		m.invoiced = after.Total
		m.creditApplied, m.creditGranted = max(after.CreditApplied, 0), max(-after.CreditApplied, 0)
	case domain.InvoicePaymentSucceeded{}.EventType():
		m.collected = after.AmountPaid
	case domain.InvoiceRefunded{}.EventType():
		m.refunded = after.AmountRefunded - before.AmountRefunded
	case domain.InvoiceVoided{}.EventType():
		// A void gives back the credit the invoice used (domain.InvoiceVoided, ReturnCredit).
		m.voided, m.creditGranted = before.Total, max(before.CreditApplied, 0)
	case domain.InvoiceMarkedUncollectible{}.EventType():
		m.uncollectible = before.Total
	}
	return m, m != revenueMovement{}
}

// invoiceValues returns the row's column values in invoiceColumns order.
func invoiceValues(id uuid.UUID, inv domain.Invoice) ([]any, error) {
	subID, err := uuid.Parse(inv.SubscriptionID)
	if err != nil {
		return nil, fmt.Errorf("invoice %s: subscription id %q: %w", id, inv.SubscriptionID, err)
	}
	var upgradeID *uuid.UUID
	if inv.UpgradeID != "" {
		u, err := uuid.Parse(inv.UpgradeID)
		if err != nil {
			return nil, fmt.Errorf("invoice %s: upgrade id %q: %w", id, inv.UpgradeID, err)
		}
		upgradeID = &u
	}
	lines, err := json.Marshal(append([]domain.InvoiceLine{}, inv.Lines...))
	if err != nil {
		return nil, fmt.Errorf("invoice %s: encode lines: %w", id, err)
	}
	state, err := EncodeInvoiceState(inv)
	if err != nil {
		return nil, err
	}
	return []any{id, inv.Number, subID, inv.CustomerID, inv.Currency, string(inv.Status), string(inv.Reason),
		inv.Subtotal, inv.CreditApplied, inv.Total, inv.Attempts, inv.AmountPaid, inv.AmountRefunded,
		optionalTime(inv.NextAttemptAt), inv.PeriodStart, inv.PeriodEnd, inv.CreatedAt, optionalTime(inv.PaidAt),
		optionalTime(inv.VoidedAt), upgradeID, json.RawMessage(lines), inv.Version, inv.UpdatedAt,
		json.RawMessage(state)}, nil
}

// loadStates reads (id, state) rows with sql (which takes the ids as $1) and decodes each state.
func loadStates[S any](ctx context.Context, tx pgx.Tx, sql string, ids []uuid.UUID, decode func([]byte) (S, error)) (map[uuid.UUID]S, error) {
	rows, err := tx.Query(ctx, sql, ids)
	if err != nil {
		return nil, err
	}
	states := make(map[uuid.UUID]S, len(ids))
	var id uuid.UUID
	var raw []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
		s, err := decode(raw)
		if err != nil {
			return fmt.Errorf("row %s: %w", id, err)
		}
		states[id] = s
		return nil
	})
	return states, err
}

// EncodeInvoiceState is the JSON stored in invoice_view.state: the domain.Invoice itself.
func EncodeInvoiceState(inv domain.Invoice) ([]byte, error) {
	b, err := json.Marshal(inv)
	if err != nil {
		return nil, fmt.Errorf("encode invoice state: %w", err)
	}
	return b, nil
}

// DecodeInvoiceState reads invoice_view.state back. Unknown fields are refused, so a state
// stored by a different version of domain.Invoice fails loudly (rebuild the read model) rather
// than being misread.
func DecodeInvoiceState(data []byte) (domain.Invoice, error) {
	var inv domain.Invoice
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&inv); err != nil {
		return domain.Invoice{}, fmt.Errorf("decode invoice state: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return domain.Invoice{}, fmt.Errorf("decode invoice state: unexpected data after the object")
	}
	return inv, nil
}
