package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// The invoices' read side:
//
//	GET /v1/subscriptions/{id}/invoices   a subscription's invoices, from the invoice_view read model
//	GET /v1/invoices/{id}                 one invoice, folded from its events (always current)
//
// The list has no ?consistent=true: the event store has no index from a subscription to its
// invoices (an invoice names its subscription only inside its data), so the list is only as
// fresh as the invoices projector, while each invoice it names can be read current by id.

// invoiceJSON is the API's representation of an invoice. A dashboard is built against exactly
// this shape: change it only compatibly.
type invoiceJSON struct {
	ID             string               `json:"id"`
	Number         string               `json:"number"`
	SubscriptionID string               `json:"subscription_id"`
	CustomerID     string               `json:"customer_id"`
	Currency       string               `json:"currency"`
	Status         domain.InvoiceStatus `json:"status"`
	Reason         domain.InvoiceReason `json:"reason"`
	Lines          []invoiceLineJSON    `json:"lines"`
	Subtotal       int64                `json:"subtotal"`
	CreditApplied  int64                `json:"credit_applied"`
	Total          int64                `json:"total"`
	AmountPaid     int64                `json:"amount_paid"`
	AmountRefunded int64                `json:"amount_refunded"`
	Attempts       int                  `json:"attempts"`
	NextAttemptAt  *time.Time           `json:"next_attempt_at"`
	UpgradeID      *string              `json:"upgrade_id"`
	CreatedAt      time.Time            `json:"created_at"`
	PaidAt         *time.Time           `json:"paid_at"`
	VoidedAt       *time.Time           `json:"voided_at"`
	PeriodStart    time.Time            `json:"period_start"`
	PeriodEnd      time.Time            `json:"period_end"`
}

// invoiceLineJSON is an invoice line. It is its own type, rather than domain.InvoiceLine, so
// that the API's shape cannot change with the domain's.
type invoiceLineJSON struct {
	Description string    `json:"description"`
	Amount      int64     `json:"amount"`
	Quantity    int64     `json:"quantity"`
	UnitAmount  int64     `json:"unit_amount"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	Proration   bool      `json:"proration"`
	PlanID      string    `json:"plan_id"`
}

type invoiceListJSON struct {
	Data []invoiceJSON `json:"data"`
}

// toInvoiceJSON renders the invoice whose stream is id. The id is the stream's, which is what
// GET /v1/invoices/{id} takes.
func toInvoiceJSON(id uuid.UUID, inv domain.Invoice) invoiceJSON {
	out := invoiceJSON{
		ID: id.String(), Number: inv.Number, SubscriptionID: inv.SubscriptionID, CustomerID: inv.CustomerID,
		Currency: inv.Currency, Status: inv.Status, Reason: inv.Reason, Lines: make([]invoiceLineJSON, len(inv.Lines)),
		Subtotal: inv.Subtotal, CreditApplied: inv.CreditApplied, Total: inv.Total, AmountPaid: inv.AmountPaid,
		AmountRefunded: inv.AmountRefunded, Attempts: inv.Attempts, NextAttemptAt: optionalTime(inv.NextAttemptAt),
		CreatedAt: inv.CreatedAt, PaidAt: optionalTime(inv.PaidAt), VoidedAt: optionalTime(inv.VoidedAt),
		PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd,
	}
	for i, l := range inv.Lines {
		out.Lines[i] = invoiceLineJSON{Description: l.Description, Amount: l.Amount, Quantity: l.Quantity,
			UnitAmount: l.UnitAmount, PeriodStart: l.PeriodStart, PeriodEnd: l.PeriodEnd, Proration: l.Proration, PlanID: l.PlanID}
	}
	if inv.UpgradeID != "" {
		u := inv.UpgradeID
		out.UpgradeID = &u
	}
	return out
}

// noQuery refuses any query parameter, as parseQuery does for unknown ones, on routes that take
// none.
func noQuery(r *http.Request) *Problem {
	values, err := url.ParseQuery(r.URL.RawQuery)
	var errs []FieldError
	if err != nil {
		errs = append(errs, FieldError{"query", "the query string is not valid URL encoding: " + err.Error()})
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		errs = append(errs, FieldError{name, "unknown parameter; this route takes none"})
	}
	if len(errs) == 0 {
		return nil
	}
	p := problem(http.StatusBadRequest, "invalid-parameter", "Invalid query parameter",
		"one or more query parameters are malformed or unknown; see errors")
	p.Errors = errs
	return p
}

// listSubscriptionInvoices answers GET /v1/subscriptions/{id}/invoices from invoice_view,
// newest first. Whether the subscription exists is asked of the event store (one index probe),
// so a subscription just created is an empty list rather than a 404.
func (a *API) listSubscriptionInvoices(w http.ResponseWriter, r *http.Request) {
	id, p := pathUUID(r, "id")
	if p == nil {
		p = noQuery(r)
	}
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	out := invoiceListJSON{Data: []invoiceJSON{}}
	exists := false
	err := a.readModel(r.Context(), func(tx pgx.Tx) error {
		err := tx.QueryRow(r.Context(), `SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND version = 1
			AND stream_type = $2)`, id, eventstore.SubscriptionStream).Scan(&exists)
		if err != nil || !exists {
			return err
		}
		rows, err := tx.Query(r.Context(), `SELECT id, state FROM `+projections.InvoiceViewTable+`
			WHERE subscription_id = $1 ORDER BY created_at DESC, id DESC`, id)
		if err != nil {
			return err
		}
		var invoiceID uuid.UUID
		var state []byte
		_, err = pgx.ForEachRow(rows, []any{&invoiceID, &state}, func() error {
			inv, err := projections.DecodeInvoiceState(state)
			if err != nil {
				return err
			}
			out.Data = append(out.Data, toInvoiceJSON(invoiceID, inv))
			return nil
		})
		return err
	})
	switch {
	case err != nil:
		a.fail(w, r, err)
	case !exists:
		a.fail(w, r, domain.ErrSubscriptionNotFound)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

// getInvoice answers GET /v1/invoices/{id} with the invoice folded from its events.
func (a *API) getInvoice(w http.ResponseWriter, r *http.Request) {
	id, p := pathUUID(r, "id")
	if p == nil {
		p = noQuery(r)
	}
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	inv, err := eventstore.LoadInvoice(r.Context(), a.db, id)
	switch {
	case err != nil:
		a.fail(w, r, err)
	case !inv.Exists():
		a.fail(w, r, domain.ErrInvoiceNotFound)
	default:
		writeJSON(w, http.StatusOK, toInvoiceJSON(id, inv))
	}
}
