package httpapi_test

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
)

// invoice is the JSON an invoice is returned as; getJSON decodes it strictly, so a field the
// API adds or drops fails the tests as well as checkSpec.
type invoice struct {
	ID             string        `json:"id"`
	Number         string        `json:"number"`
	SubscriptionID string        `json:"subscription_id"`
	CustomerID     string        `json:"customer_id"`
	Currency       string        `json:"currency"`
	Status         string        `json:"status"`
	Reason         string        `json:"reason"`
	Lines          []invoiceLine `json:"lines"`
	Subtotal       int64         `json:"subtotal"`
	CreditApplied  int64         `json:"credit_applied"`
	Total          int64         `json:"total"`
	AmountPaid     int64         `json:"amount_paid"`
	AmountRefunded int64         `json:"amount_refunded"`
	Attempts       int           `json:"attempts"`
	NextAttemptAt  *time.Time    `json:"next_attempt_at"`
	UpgradeID      *string       `json:"upgrade_id"`
	CreatedAt      time.Time     `json:"created_at"`
	PaidAt         *time.Time    `json:"paid_at"`
	VoidedAt       *time.Time    `json:"voided_at"`
	PeriodStart    time.Time     `json:"period_start"`
	PeriodEnd      time.Time     `json:"period_end"`
}

type invoiceLine struct {
	Description string    `json:"description"`
	Amount      int64     `json:"amount"`
	Quantity    int64     `json:"quantity"`
	UnitAmount  int64     `json:"unit_amount"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	Proration   bool      `json:"proration"`
	PlanID      string    `json:"plan_id"`
}

type invoiceList struct {
	Data []invoice `json:"data"`
}

// wantInvoice is what the API must say about invoice id, from the invoice folded by the test.
func wantInvoice(t *testing.T, db *pgxpool.Pool, id uuid.UUID) invoice {
	t.Helper()
	inv, err := eventstore.LoadInvoice(context.Background(), db, id)
	if err != nil || !inv.Exists() {
		t.Fatalf("load invoice %s: %v (exists %t)", id, err, inv.Exists())
	}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	out := invoice{ID: id.String(), Number: inv.Number, SubscriptionID: inv.SubscriptionID, CustomerID: inv.CustomerID,
		Currency: inv.Currency, Status: string(inv.Status), Reason: string(inv.Reason), Lines: []invoiceLine{},
		Subtotal: inv.Subtotal, CreditApplied: inv.CreditApplied, Total: inv.Total, AmountPaid: inv.AmountPaid,
		AmountRefunded: inv.AmountRefunded, Attempts: inv.Attempts, NextAttemptAt: opt(inv.NextAttemptAt),
		CreatedAt: inv.CreatedAt, PaidAt: opt(inv.PaidAt), VoidedAt: opt(inv.VoidedAt),
		PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd}
	for _, l := range inv.Lines {
		out.Lines = append(out.Lines, invoiceLine(l))
	}
	if inv.UpgradeID != "" {
		out.UpgradeID = &inv.UpgradeID
	}
	return out
}

// TestInvoiceRoutes: a subscription's invoices through their lifecycle, listed newest first
// from the read model and each read current by id, with the read scope; and every refusal.
func TestInvoiceRoutes(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	readKey := withKey(api.keys[httpapi.ScopeRead])
	// On a trial, so that the only invoices are the ones this test issues.
	var s subscription
	api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_test", "plan_id": "pro_monthly", "seats": 2, "trial_days": 14}).decode(t, &s)
	id := uuid.MustParse(s.ID)
	sub, _, err := eventstore.LoadSubscription(context.Background(), api.db, id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A subscription without invoices, not yet projected anywhere: an empty list, not a 404.
	var list invoiceList
	api.getJSON("/v1/subscriptions/"+s.ID+"/invoices", &list)
	if list.Data == nil || len(list.Data) != 0 {
		t.Errorf("invoices of a new subscription = %+v, want []", list)
	}

	// The first period's invoice, declined once; then a downgrade's credit invoice; then an
	// upgrade's invoice, paid with the credit applied first.
	now := testStart
	first := testenv.IssueInvoice(t, api.db, domain.InvoiceRequest{SubscriptionID: s.ID, CustomerID: s.CustomerID,
		Currency: "USD", Reason: domain.InvoiceForCreate, Lines: []domain.InvoiceLine{testenv.PeriodLine(sub)},
		PeriodStart: sub.PeriodStart, PeriodEnd: sub.PeriodEnd}, now)
	testenv.PayInvoice(t, api.db, first, false, now.Add(time.Minute))
	credit := testenv.IssueInvoice(t, api.db, domain.InvoiceRequest{SubscriptionID: s.ID, CustomerID: s.CustomerID,
		Currency: "USD", Reason: domain.InvoiceForUpdate, PeriodStart: now.Add(time.Hour), PeriodEnd: sub.PeriodEnd,
		Lines: []domain.InvoiceLine{{Description: "Unused time on 2 × Pro", Amount: -3000, Quantity: 2, UnitAmount: 4900,
			PeriodStart: now.Add(time.Hour), PeriodEnd: sub.PeriodEnd, Proration: true, PlanID: "pro_monthly"}}},
		now.Add(time.Hour))
	upgradeID := uuid.Must(uuid.NewV7()).String()
	upgrade := testenv.IssueInvoice(t, api.db, domain.InvoiceRequest{SubscriptionID: s.ID, CustomerID: s.CustomerID,
		Currency: "USD", Reason: domain.InvoiceForUpdate, PeriodStart: now.Add(2 * time.Hour), PeriodEnd: sub.PeriodEnd,
		UpgradeID: upgradeID, Lines: []domain.InvoiceLine{
			{Description: "Remaining time on 2 × Business", Amount: 8000, Quantity: 2, UnitAmount: 9900,
				PeriodStart: now.Add(2 * time.Hour), PeriodEnd: sub.PeriodEnd, Proration: true, PlanID: "business_monthly"}}},
		now.Add(2*time.Hour))
	testenv.PayInvoice(t, api.db, upgrade, true, now.Add(2*time.Hour+time.Second))
	projectAll(t, api.db, testenv.WholeLog(t, api.db))

	api.getJSON("/v1/subscriptions/"+s.ID+"/invoices", &list)
	want := []invoice{wantInvoice(t, api.db, upgrade), wantInvoice(t, api.db, credit), wantInvoice(t, api.db, first)}
	if !reflect.DeepEqual(list.Data, want) {
		t.Fatalf("invoices:\n got %s\nwant %s", show(list.Data), show(want))
	}
	// The figures themselves, so that a fold that is wrong in the same way as the API is caught.
	u, c, f := list.Data[0], list.Data[1], list.Data[2]
	if f.Number[9:] != "0001" || c.Number[9:] != "0002" || u.Number[9:] != "0003" || f.Number[:8] != u.Number[:8] {
		t.Errorf("numbers %s %s %s, want one series 0001-0003", f.Number, c.Number, u.Number)
	}
	if f.Status != "open" || f.Total != 9800 || f.Attempts != 1 || f.NextAttemptAt == nil ||
		!f.NextAttemptAt.Equal(now.Add(time.Minute).AddDate(0, 0, 1)) || f.UpgradeID != nil || f.PaidAt != nil ||
		len(f.Lines) != 1 || f.Lines[0].Proration || f.Lines[0].Amount != 9800 || f.Reason != "subscription_create" {
		t.Errorf("declined first invoice = %s", show(f))
	}
	if c.Status != "paid" || c.Subtotal != -3000 || c.CreditApplied != -3000 || c.Total != 0 || c.PaidAt == nil || c.Attempts != 0 {
		t.Errorf("credit invoice = %s", show(c))
	}
	if u.Status != "paid" || u.Subtotal != 8000 || u.CreditApplied != 3000 || u.Total != 5000 || u.AmountPaid != 5000 ||
		u.UpgradeID == nil || *u.UpgradeID != upgradeID || u.NextAttemptAt != nil {
		t.Errorf("upgrade invoice = %s", show(u))
	}

	// GET /v1/invoices/{id} is current at once; the list catches up when projected.
	testenv.PayInvoice(t, api.db, first, true, now.Add(25*time.Hour))
	testenv.AppendInvoiceEvents(t, api.db, upgrade, domain.InvoiceRefunded{RefundID: "re_1", ChargeID: "ch_1",
		Amount: 1200, RefundedAt: now.Add(26 * time.Hour)})
	for _, id := range []uuid.UUID{first, upgrade} {
		var got invoice
		api.getJSON("/v1/invoices/"+id.String(), &got)
		if w := wantInvoice(t, api.db, id); !reflect.DeepEqual(got, w) {
			t.Errorf("GET /v1/invoices/%s:\n got %s\nwant %s", id, show(got), show(w))
		}
	}
	api.getJSON("/v1/subscriptions/"+s.ID+"/invoices", &list)
	if list.Data[2].Status != "open" || list.Data[0].AmountRefunded != 0 {
		t.Errorf("the list changed before the projector ran: %s", show(list.Data))
	}
	projectAll(t, api.db, testenv.WholeLog(t, api.db))
	api.getJSON("/v1/subscriptions/"+s.ID+"/invoices", &list)
	if list.Data[2].Status != "paid" || list.Data[2].AmountPaid != 9800 || list.Data[2].Attempts != 2 ||
		list.Data[0].AmountRefunded != 1200 {
		t.Errorf("after projecting: %s", show(list.Data))
	}

	// Another subscription's invoices are not listed.
	other := api.create("starter_monthly", 1)
	api.getJSON("/v1/subscriptions/"+other.ID+"/invoices", &list)
	if len(list.Data) != 0 {
		t.Errorf("another subscription lists %d invoices", len(list.Data))
	}

	// Refusals.
	unknown := uuid.NewString()
	tests := []struct {
		path, typ, title string
		status           int
	}{
		{"/v1/subscriptions/" + unknown + "/invoices", "/problems/not-found", "Subscription not found", 404},
		{"/v1/subscriptions/" + first.String() + "/invoices", "/problems/not-found", "Subscription not found", 404}, // an invoice is not a subscription
		{"/v1/subscriptions/nope/invoices", "/problems/invalid-id", "Invalid id", 400},
		{"/v1/subscriptions/" + s.ID + "/invoices?limit=5", "/problems/invalid-parameter", "Invalid query parameter", 400},
		{"/v1/invoices/" + unknown, "/problems/not-found", "Invoice not found", 404},
		{"/v1/invoices/" + s.ID, "/problems/not-found", "Invoice not found", 404}, // a subscription is not an invoice
		{"/v1/invoices/" + first.String()[:35], "/problems/invalid-id", "Invalid id", 400},
		{"/v1/invoices/" + first.String() + "?consistent=true", "/problems/invalid-parameter", "Invalid query parameter", 400},
	}
	for _, tt := range tests {
		r := api.do("GET", tt.path, nil, readKey)
		if r.status != tt.status {
			t.Errorf("GET %s: status %d, want %d: %s", tt.path, r.status, tt.status, r.body)
			continue
		}
		if p := r.problem(t); p.Type != tt.typ || p.Title != tt.title {
			t.Errorf("GET %s: problem %+v, want %s %q", tt.path, p, tt.typ, tt.title)
		}
	}
	if r := api.do("GET", "/v1/invoices/"+first.String(), nil, withKey("bk_nonsense")); r.status != http.StatusUnauthorized {
		t.Errorf("unknown key: %d", r.status)
	}
}
