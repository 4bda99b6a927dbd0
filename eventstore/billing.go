package eventstore

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
)

// Stream types of the billing aggregates (each event type's prefix, see domain.StreamTypeOf).
const (
	InvoiceStream  = "invoice"
	CustomerStream = "customer"
	UpgradeStream  = "upgrade"
)

// customerNamespace derives customer stream ids: customer ids are the caller's own strings.
var customerNamespace = uuid.MustParse("4f0c3a52-2b7e-4d5c-9a61-6f0e2d8c7b19")

// CustomerStreamID is the stream of a customer's invoice series and credit balance.
func CustomerStreamID(customerID string) uuid.UUID {
	return uuid.NewSHA1(customerNamespace, []byte(customerID))
}

// LoadInvoice folds an invoice's stream (the zero Invoice if it has none).
func LoadInvoice(ctx context.Context, q Querier, id uuid.UUID) (domain.Invoice, error) {
	return loadFold(ctx, q, id, domain.EvolveInvoice)
}

// LoadCustomer folds a customer's stream (the zero Customer if it has none).
func LoadCustomer(ctx context.Context, q Querier, customerID string) (domain.Customer, error) {
	return loadFold(ctx, q, CustomerStreamID(customerID), domain.EvolveCustomer)
}

// QueueLoadCustomers queues on b a read of several customers' streams, folded, in one query that
// travels with the batch's other statements (for a batch of commands): into gets the customers
// when b is sent, a customer without a stream as the zero Customer.
func QueueLoadCustomers(b *pgx.Batch, customerIDs []string, into func(map[string]domain.Customer)) {
	l := newCustomerLoad(customerIDs)
	if len(l.streams) == 0 {
		into(map[string]domain.Customer{})
		return
	}
	b.Queue(loadAfterSQL, l.streams, make([]int64, len(l.streams))).Query(func(rows pgx.Rows) error {
		customers, err := l.fold(rows)
		if err == nil {
			into(customers)
		}
		return err
	})
}

// customerLoad is a load of customers' streams: each named once, under its customer's id.
type customerLoad struct {
	streams  []uuid.UUID
	customer map[uuid.UUID]string // stream → customer id
}

func newCustomerLoad(customerIDs []string) customerLoad {
	l := customerLoad{customer: make(map[uuid.UUID]string, len(customerIDs))}
	for _, id := range customerIDs {
		s := CustomerStreamID(id)
		if _, dup := l.customer[s]; dup {
			continue // each probe returns the stream's events: a second would fold them again
		}
		l.customer[s] = id
		l.streams = append(l.streams, s)
	}
	return l
}

// fold folds the rows of loadAfterSQL into the customers' states.
func (l customerLoad) fold(rows pgx.Rows) (map[string]domain.Customer, error) {
	events, err := collectEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("load customers: %w", err)
	}
	byStream := make(map[uuid.UUID]domain.Customer, len(l.streams))
	if err := foldInto(byStream, events, domain.EvolveCustomer); err != nil {
		return nil, err
	}
	out := make(map[string]domain.Customer, len(l.streams))
	for s, id := range l.customer {
		out[id] = byStream[s]
	}
	return out, nil
}

// LoadInvoices folds the streams of several invoices in one query; an invoice without a stream
// is the zero Invoice.
func LoadInvoices(ctx context.Context, q Querier, ids []uuid.UUID) (map[uuid.UUID]domain.Invoice, error) {
	out, err := loadFolds(ctx, q, ids, domain.EvolveInvoice)
	if err != nil {
		return nil, fmt.Errorf("load invoices: %w", err)
	}
	return out, nil
}

// loadFolds folds each of the streams (named once or more) from its first event, in one query;
// a stream without events gets the zero state.
func loadFolds[S any](ctx context.Context, q Querier, ids []uuid.UUID, evolve func(S, domain.Event) S) (map[uuid.UUID]S, error) {
	out := make(map[uuid.UUID]S, len(ids))
	streams := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		if _, dup := out[id]; dup {
			continue // each probe returns the stream's events: a second would fold them again
		}
		var zero S
		out[id] = zero
		streams = append(streams, id)
	}
	events, err := loadAfter(ctx, q, streams, make([]int64, len(streams)))
	if err != nil {
		return nil, err
	}
	if err := foldInto(out, events, evolve); err != nil {
		return nil, err
	}
	return out, nil
}

// foldInto folds events, in order, onto the states of their streams in states (a stream absent
// starts from the zero state).
func foldInto[S any](states map[uuid.UUID]S, events []Event, evolve func(S, domain.Event) S) error {
	for _, e := range events {
		de, err := DecodeEvent(e)
		if err != nil {
			return err
		}
		states[e.StreamID] = evolve(states[e.StreamID], de)
	}
	return nil
}

// loadAfterSQL returns the events of each stream ($1, each named once) after its version in
// $2, stream by stream in version order: one index range per stream. Written as
// `stream_id = ANY($1)` it was planned as a scan of the whole log when the table's statistics
// were stale (a young store, or autovacuum off).
const loadAfterSQL = `SELECT e.* FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS k(id, after, ord),
	LATERAL (SELECT ` + eventColumns + ` FROM events WHERE stream_id = k.id AND version > k.after ORDER BY version) e
	ORDER BY k.ord, e.version`

// loadAfter runs loadAfterSQL.
func loadAfter(ctx context.Context, q Querier, streams []uuid.UUID, after []int64) ([]Event, error) {
	if len(streams) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, loadAfterSQL, streams, after)
	if err != nil {
		return nil, err
	}
	return collectEvents(rows)
}

// LoadUpgrade folds an upgrade saga's stream (the zero Upgrade if it has none).
func LoadUpgrade(ctx context.Context, q Querier, id uuid.UUID) (domain.Upgrade, error) {
	return loadFold(ctx, q, id, domain.EvolveUpgrade)
}

func loadFold[S any](ctx context.Context, q Querier, id uuid.UUID, evolve func(S, domain.Event) S) (S, error) {
	var s S
	events, err := Load(ctx, q, id, LoadOptions{})
	if err != nil {
		return s, err
	}
	for _, e := range events {
		de, err := DecodeEvent(e)
		if err != nil {
			return s, err
		}
		s = evolve(s, de)
	}
	return s, nil
}
