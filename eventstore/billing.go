package eventstore

import (
	"context"
	"fmt"

	"github.com/google/uuid"

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

// LoadCustomers folds the streams of several customers in one query (for a batch of commands); a
// customer without a stream is the zero Customer.
func LoadCustomers(ctx context.Context, q Querier, customerIDs []string) (map[string]domain.Customer, error) {
	out := make(map[string]domain.Customer, len(customerIDs))
	if len(customerIDs) == 0 {
		return out, nil
	}
	byStream := make(map[uuid.UUID]string, len(customerIDs))
	streams := make([]uuid.UUID, 0, len(customerIDs))
	for _, id := range customerIDs {
		s := CustomerStreamID(id)
		if _, dup := byStream[s]; dup {
			continue // each probe returns the stream's events: a second would fold them again
		}
		byStream[s] = id
		streams = append(streams, s)
		out[id] = domain.Customer{}
	}
	// One index range per stream: `stream_id = ANY($1)` was planned as a scan of the whole log
	// when the table's statistics were stale (a young store, or autovacuum off).
	rows, err := q.Query(ctx, `SELECT e.* FROM unnest($1::uuid[]) WITH ORDINALITY AS k(id, ord),
		LATERAL (SELECT `+eventColumns+` FROM events WHERE stream_id = k.id ORDER BY version) e
		ORDER BY k.ord, e.version`, streams)
	if err != nil {
		return nil, fmt.Errorf("load customers: %w", err)
	}
	events, err := collectEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("load customers: %w", err)
	}
	for _, e := range events {
		de, err := DecodeEvent(e)
		if err != nil {
			return nil, err
		}
		id := byStream[e.StreamID]
		out[id] = domain.EvolveCustomer(out[id], de)
	}
	return out, nil
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
