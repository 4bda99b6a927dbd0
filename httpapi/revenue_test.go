package httpapi_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
)

type revenueFigures struct {
	Invoiced      int64 `json:"invoiced"`
	Collected     int64 `json:"collected"`
	Refunded      int64 `json:"refunded"`
	CreditGranted int64 `json:"credit_granted"`
	CreditApplied int64 `json:"credit_applied"`
	Voided        int64 `json:"voided"`
	Uncollectible int64 `json:"uncollectible"`
}

func (f *revenueFigures) add(g revenueFigures) {
	f.Invoiced += g.Invoiced
	f.Collected += g.Collected
	f.Refunded += g.Refunded
	f.CreditGranted += g.CreditGranted
	f.CreditApplied += g.CreditApplied
	f.Voided += g.Voided
	f.Uncollectible += g.Uncollectible
}

type revenueBucket struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	revenueFigures
	StartingOutstanding int64 `json:"starting_outstanding"`
	EndingOutstanding   int64 `json:"ending_outstanding"`
}

type revenueCurrency struct {
	Currency            string          `json:"currency"`
	StartingOutstanding int64           `json:"starting_outstanding"`
	EndingOutstanding   int64           `json:"ending_outstanding"`
	Totals              revenueFigures  `json:"totals"`
	Buckets             []revenueBucket `json:"buckets"`
}

type revenueSeries struct {
	Interval   string            `json:"interval"`
	From       time.Time         `json:"from"`
	To         time.Time         `json:"to"`
	Currencies []revenueCurrency `json:"currencies"`
}

// invoiceHistory is one invoice's events, decoded, in version order.
type invoiceHistory struct {
	currency string
	events   []domain.Event
	at       []time.Time
}

// moneyFold is the test's own model of the revenue figures, from the log alone.
type moneyFold map[uuid.UUID]invoiceHistory

func foldMoney(t *testing.T, events []eventstore.Event) moneyFold {
	t.Helper()
	streams := map[uuid.UUID][]eventstore.Event{}
	for _, e := range events {
		if e.StreamType == eventstore.InvoiceStream {
			streams[e.StreamID] = append(streams[e.StreamID], e)
		}
	}
	out := moneyFold{}
	for id, stream := range streams {
		slices.SortFunc(stream, func(a, b eventstore.Event) int { return cmp.Compare(a.Version, b.Version) })
		var h invoiceHistory
		for _, e := range stream {
			de, err := eventstore.DecodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := de.(domain.InvoiceCreated); ok {
				h.currency = c.Currency
			}
			h.events, h.at = append(h.events, de), append(h.at, e.OccurredAt)
		}
		out[id] = h
	}
	return out
}

// flows sums what the invoices' events in [from, to) moved, by the test's reading of each
// event: a creation invoices its total and applies (or, for a credit invoice, grants) its
// credit; a payment collects; a refund refunds; a void voids the total and gives back credit
// the invoice used; a write-off is uncollectible.
func (f moneyFold) flows(currency string, from, to time.Time) revenueFigures {
	var sum revenueFigures
	for _, h := range f {
		if h.currency != currency {
			continue
		}
		var created domain.InvoiceCreated
		for i, e := range h.events {
			if c, ok := e.(domain.InvoiceCreated); ok {
				created = c
			}
			if h.at[i].Before(from) || !h.at[i].Before(to) {
				continue
			}
			switch e := e.(type) {
			case domain.InvoiceCreated:
				sum.Invoiced += e.Total
				if e.CreditApplied > 0 {
					sum.CreditApplied += e.CreditApplied
				} else {
					sum.CreditGranted -= e.CreditApplied
				}
			case domain.InvoicePaymentSucceeded:
				sum.Collected += e.Amount
			case domain.InvoiceRefunded:
				sum.Refunded += e.Amount
			case domain.InvoiceVoided:
				sum.Voided += created.Total
				sum.CreditGranted += max(created.CreditApplied, 0)
			case domain.InvoiceMarkedUncollectible:
				sum.Uncollectible += created.Total
			}
		}
	}
	return sum
}

// outstandingAt is the total of the invoices open at t: those whose events before t fold to
// an open invoice.
func (f moneyFold) outstandingAt(currency string, t time.Time) int64 {
	var sum int64
	for _, h := range f {
		if h.currency != currency {
			continue
		}
		var inv domain.Invoice
		for i, e := range h.events {
			if h.at[i].Before(t) {
				inv = domain.EvolveInvoice(inv, e)
			}
		}
		if inv.Status == domain.InvoiceOpen {
			sum += inv.Total
		}
	}
	return sum
}

func (f moneyFold) currencies() []string {
	var out []string
	for _, h := range f {
		if !slices.Contains(out, h.currency) {
			out = append(out, h.currency)
		}
	}
	slices.Sort(out)
	return out
}

func (f moneyFold) series(currencies []string, from, to time.Time, interval string) revenueSeries {
	out := revenueSeries{Interval: interval, From: from, To: to, Currencies: []revenueCurrency{}}
	bounds := boundaries(from, to, interval)
	for _, c := range currencies {
		rc := revenueCurrency{Currency: c, StartingOutstanding: f.outstandingAt(c, from), EndingOutstanding: f.outstandingAt(c, to)}
		for i := range len(bounds) - 1 {
			b := revenueBucket{Start: bounds[i], End: bounds[i+1], revenueFigures: f.flows(c, bounds[i], bounds[i+1]),
				StartingOutstanding: f.outstandingAt(c, bounds[i]), EndingOutstanding: f.outstandingAt(c, bounds[i+1])}
			rc.Totals.add(b.revenueFigures)
			rc.Buckets = append(rc.Buckets, b)
		}
		out.Currencies = append(out.Currencies, rc)
	}
	return out
}

// TestDashboardRevenueMatchesIndependentFold: a random history of subscriptions and invoices
// (issued with and without credit, declined, paid, refunded, voided, written off), projected as
// the consumers would; every revenue figure over several ranges, intervals and currencies equals
// what this test computes on its own from the event log.
func TestDashboardRevenueMatchesIndependentFold(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	rng := rand.New(rand.NewPCG(5, 2026))
	runWorkload(t, api.db, rng, 150)
	var subs []uuid.UUID
	for _, e := range testenv.WholeLog(t, api.db) {
		if e.StreamType == eventstore.SubscriptionStream && e.Version == 1 {
			subs = append(subs, e.StreamID)
		}
	}
	w := &testenv.BillingWorkload{DB: api.db, Rng: rng, Now: workloadStart}
	for range 400 {
		w.Step(t, subs)
	}
	// An invoice issued exactly on a bucket boundary and paid exactly on the next: each event
	// belongs to the bucket (and range) that starts at its time, not to the one that ends there.
	boundary := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	sub, _, err := eventstore.LoadSubscription(context.Background(), api.db, subs[0], eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	onBoundary := testenv.IssueInvoice(t, api.db, domain.InvoiceRequest{SubscriptionID: subs[0].String(),
		CustomerID: sub.CustomerID, Currency: sub.Plan.Currency, Reason: domain.InvoiceForCycle,
		Lines: []domain.InvoiceLine{testenv.PeriodLine(sub)}, PeriodStart: sub.PeriodStart, PeriodEnd: sub.PeriodEnd}, boundary)
	testenv.PayInvoice(t, api.db, onBoundary, true, boundary.AddDate(0, 1, 0))

	events := testenv.WholeLog(t, api.db)
	projectAll(t, api.db, events)
	f := foldMoney(t, events)
	end := w.Now

	// The history must move every figure in both currencies, or the test proves less than it says.
	currencies := f.currencies()
	if !reflect.DeepEqual(currencies, []string{"EUR", "USD"}) {
		t.Fatalf("invoice currencies = %v, want EUR and USD", currencies)
	}
	all := f.flows("USD", workloadStart.AddDate(-1, 0, 0), end.AddDate(1, 0, 0))
	if all.Invoiced == 0 || all.Collected == 0 || all.Refunded == 0 || all.CreditGranted == 0 || all.CreditApplied == 0 ||
		all.Voided == 0 || all.Uncollectible == 0 {
		t.Errorf("some figure never moves in USD: %+v", all)
	}
	if f.outstandingAt("USD", end.Add(time.Second)) == 0 {
		t.Errorf("nothing is outstanding at the end")
	}
	t.Logf("%d invoices from %s to %s; USD overall %+v", len(f), workloadStart, end, all)

	mid := workloadStart.Add(end.Sub(workloadStart) / 2).Truncate(time.Second).Add(1234 * time.Millisecond)
	tests := []struct {
		from, to   time.Time
		interval   string
		currency   string // "" for all
		currencies []string
	}{
		{workloadStart.AddDate(0, -1, 0), end.AddDate(0, 1, 0), "month", "", currencies},
		{workloadStart.AddDate(0, 0, 3), mid, "week", "USD", []string{"USD"}},
		{mid, end.Add(time.Hour), "day", "EUR", []string{"EUR"}},
		{workloadStart.AddDate(0, 0, 10).Add(13 * time.Hour), workloadStart.AddDate(0, 0, 12).Add(7 * time.Hour), "day", "", currencies},
		{workloadStart.AddDate(-1, 0, 0), workloadStart.AddDate(0, -6, 0), "month", "", currencies},   // before anything
		{workloadStart, end, "month", "GBP", []string{"GBP"}},                                         // a currency without invoices
		{boundary, boundary.AddDate(0, 1, 0), "week", sub.Plan.Currency, []string{sub.Plan.Currency}}, // events on from and on to
	}
	for _, tt := range tests {
		q := url.Values{"from": {tt.from.Format(time.RFC3339Nano)}, "to": {tt.to.Format(time.RFC3339Nano)}, "interval": {tt.interval}}
		if tt.currency != "" {
			q.Set("currency", tt.currency)
		}
		var got revenueSeries
		api.getJSON("/v1/dashboard/revenue?"+q.Encode(), &got)
		want := f.series(tt.currencies, tt.from.UTC(), tt.to.UTC(), tt.interval)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("revenue %s:\n got %s\nwant %s", q.Encode(), show(got), show(want))
		}
	}
}

// TestDashboardRevenueParameters: the revenue series takes the MRR series' parameters, with the
// same refusals, and over an empty read model reports no currency (or the one asked, at zero).
func TestDashboardRevenueParameters(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	var got revenueSeries
	api.getJSON("/v1/dashboard/revenue?from=2026-01-01T00:00:00Z&to=2026-04-01T00:00:00Z", &got)
	if got.Interval != "month" || got.Currencies == nil || len(got.Currencies) != 0 {
		t.Errorf("over nothing = %s", show(got))
	}
	api.getJSON("/v1/dashboard/revenue?from=2026-01-01T00:00:00Z&to=2026-01-15T00:00:00Z&interval=week&currency=USD", &got)
	if len(got.Currencies) != 1 || got.Currencies[0].Currency != "USD" || len(got.Currencies[0].Buckets) != 3 ||
		got.Currencies[0].Totals != (revenueFigures{}) {
		t.Errorf("USD over nothing = %s", show(got))
	}
	tests := []struct {
		query    string
		status   int
		pointers []string
	}{
		{"", 422, []string{"from", "to"}},
		{"from=2026-01-01T00:00:00Z", 422, []string{"to"}},
		{"from=yesterday&to=2026-01-01T00:00:00Z", 400, []string{"from"}},
		{"from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", 422, []string{"to"}},
		{"from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&interval=year", 422, []string{"interval"}},
		{"from=2000-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&interval=day", 422, []string{"to"}},
		{"from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&currency=usd", 422, []string{"currency"}},
		{"from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&customer_id=cus_1", 400, []string{"customer_id"}},
	}
	for _, tt := range tests {
		r := api.do("GET", "/v1/dashboard/revenue?"+tt.query, nil, withKey(api.keys[httpapi.ScopeRead]))
		if r.status != tt.status {
			t.Errorf("?%s: status %d, want %d: %s", tt.query, r.status, tt.status, r.body)
			continue
		}
		p := r.problem(t)
		var pointers []string
		for _, e := range p.Errors {
			pointers = append(pointers, e.Pointer)
		}
		if !reflect.DeepEqual(pointers, tt.pointers) {
			t.Errorf("?%s: pointers %v, want %v (%s)", tt.query, pointers, tt.pointers, fmt.Sprint(p.Errors))
		}
	}
}
