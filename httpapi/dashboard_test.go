package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
	"github.com/billing-oss/billing/projections/projectionstest"
)

// workloadStart is a Monday, so that weekly buckets have something to align to (or not).
var workloadStart = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// runWorkload runs n random commands through domain.Decide and eventstore.Append, over many
// subscriptions and customers, moving a fake clock forward; commands the domain refuses are
// skipped. It returns the fake time after the last command.
func runWorkload(t *testing.T, db *pgxpool.Pool, rng *rand.Rand, n int) time.Time {
	t.Helper()
	ctx := context.Background()
	plans := domain.DefaultCatalog().Plans()
	now := workloadStart
	var subs []uuid.UUID
	canceled := map[uuid.UUID]bool{}
	for range n {
		now = now.Add(time.Duration(rng.IntN(6*3600)) * time.Second)
		var alive []uuid.UUID
		for _, id := range subs {
			if !canceled[id] {
				alive = append(alive, id)
			}
		}
		var id uuid.UUID
		var cmd domain.Command
		if len(alive) == 0 || rng.IntN(4) == 0 {
			id = uuid.Must(uuid.NewV7())
			trial := new(int) // no trial
			switch rng.IntN(5) {
			case 0:
				trial = nil // the plan's default
			case 1:
				*trial = rng.IntN(10) + 1
			}
			cmd = domain.Create{SubscriptionID: id.String(), CustomerID: fmt.Sprintf("cus_%02d", rng.IntN(20)),
				Plan: plans[rng.IntN(len(plans))], Seats: int64(rng.IntN(8) + 1), TrialDays: trial}
		} else {
			id = alive[rng.IntN(len(alive))]
			cmd = testenv.RandomChange(rng, plans)
		}
		sub, _, err := eventstore.LoadSubscription(ctx, db, id, eventstore.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		events, err := domain.Decide(sub, cmd, now)
		if err != nil {
			continue // refused: part of the workload
		}
		enc, err := eventstore.EncodeEvents(events, eventstore.Metadata{Source: "dashboard test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.Append(ctx, db, eventstore.Stream{ID: id, Type: eventstore.SubscriptionStream}, sub.Version, enc); err != nil {
			t.Fatal(err)
		}
		if _, ok := cmd.(domain.Create); ok {
			subs = append(subs, id)
		}
		if cmd == (domain.Cancel{}) {
			canceled[id] = true
		}
	}
	return now
}

// fold is the test's own model of the dashboard, computed from the event log alone: each
// subscription stream folded with domain.Evolve, and the MRR movements found by comparing
// Subscription.MRR() before and after every event.
type fold struct {
	subs      []domain.Subscription // by id
	movements []movement
}

type movement struct {
	customer, currency, kind string
	at                       time.Time
	amount                   int64
}

func foldLog(t *testing.T, events []eventstore.Event) fold {
	t.Helper()
	streams := map[uuid.UUID][]eventstore.Event{}
	for _, e := range events {
		if e.StreamType == eventstore.SubscriptionStream {
			streams[e.StreamID] = append(streams[e.StreamID], e)
		}
	}
	var f fold
	for _, stream := range streams {
		slices.SortFunc(stream, func(a, b eventstore.Event) int { return cmp.Compare(a.Version, b.Version) })
		var s domain.Subscription
		paidBefore := false
		for _, e := range stream {
			de, err := eventstore.DecodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			before := s.MRR()
			s = domain.Evolve(s, de)
			after := s.MRR()
			if before != after {
				kind := map[bool]string{true: "expansion", false: "contraction"}[after > before]
				switch {
				case before == 0 && paidBefore:
					kind = "reactivation"
				case before == 0:
					kind = "new"
				case after == 0:
					kind = "churn"
				}
				f.movements = append(f.movements, movement{customer: s.CustomerID, currency: s.Plan.Currency, kind: kind,
					at: e.OccurredAt, amount: after - before})
			}
			paidBefore = paidBefore || after > 0
		}
		f.subs = append(f.subs, s)
	}
	slices.SortFunc(f.subs, func(a, b domain.Subscription) int { return cmp.Compare(a.ID, b.ID) })
	return f
}

func (f fold) defaultCurrency() string {
	counts := map[string]int{}
	for _, s := range f.subs {
		counts[s.Plan.Currency]++
	}
	best := "USD"
	for c, n := range counts {
		if n > counts[best] || (n == counts[best] && c < best) {
			best = c
		}
	}
	return best
}

type summary struct {
	Currency              string `json:"currency"`
	MRR                   int64  `json:"mrr"`
	ARR                   int64  `json:"arr"`
	ActiveSubscriptions   int64  `json:"active_subscriptions"`
	TrialingSubscriptions int64  `json:"trialing_subscriptions"`
	PastDueSubscriptions  int64  `json:"past_due_subscriptions"`
	PausedSubscriptions   int64  `json:"paused_subscriptions"`
	UnpaidSubscriptions   int64  `json:"unpaid_subscriptions"`
	CanceledSubscriptions int64  `json:"canceled_subscriptions"`
	Seats                 int64  `json:"seats"`
	ARPA                  int64  `json:"arpa"`
	Customers             int64  `json:"customers"`
}

func (f fold) summary(currency string) summary {
	out := summary{Currency: currency}
	paying := map[string]bool{}
	for _, s := range f.subs {
		if s.Plan.Currency != currency {
			continue
		}
		out.MRR += s.MRR()
		switch s.Status {
		case domain.StatusActive:
			out.ActiveSubscriptions++
		case domain.StatusTrialing:
			out.TrialingSubscriptions++
		case domain.StatusPastDue:
			out.PastDueSubscriptions++
		case domain.StatusPaused:
			out.PausedSubscriptions++
		case domain.StatusUnpaid:
			out.UnpaidSubscriptions++
		case domain.StatusCanceled:
			out.CanceledSubscriptions++
		}
		if s.Status == domain.StatusActive || s.Status == domain.StatusPastDue || s.Status == domain.StatusTrialing {
			out.Seats += s.Seats
		}
		if s.MRR() > 0 {
			paying[s.CustomerID] = true
		}
	}
	out.ARR = 12 * out.MRR
	out.Customers = int64(len(paying))
	if out.Customers > 0 {
		out.ARPA = roundHalfEvenRat(big.NewRat(out.MRR, out.Customers)).Int64()
	}
	return out
}

// roundHalfEvenRat rounds a non-negative rational to the nearest integer, ties to even.
func roundHalfEvenRat(r *big.Rat) *big.Int {
	floor := new(big.Int).Div(r.Num(), r.Denom())
	frac := new(big.Rat).Sub(r, new(big.Rat).SetInt(floor))
	if c := frac.Cmp(big.NewRat(1, 2)); c > 0 || (c == 0 && floor.Bit(0) == 1) {
		floor.Add(floor, big.NewInt(1))
	}
	return floor
}

type planFigure struct {
	PlanID        string `json:"plan_id"`
	Subscriptions int64  `json:"subscriptions"`
	Seats         int64  `json:"seats"`
	MRR           int64  `json:"mrr"`
}

type plansResponse struct {
	Currency string       `json:"currency"`
	Data     []planFigure `json:"data"`
}

func (f fold) plans(currency string) plansResponse {
	byPlan := map[string]*planFigure{}
	for _, s := range f.subs {
		if s.Plan.Currency != currency || s.Status == domain.StatusCanceled {
			continue
		}
		p := byPlan[s.Plan.PlanID]
		if p == nil {
			p = &planFigure{PlanID: s.Plan.PlanID}
			byPlan[s.Plan.PlanID] = p
		}
		p.Subscriptions++
		if s.Status != domain.StatusPaused {
			p.Seats += s.Seats
		}
		p.MRR += s.MRR()
	}
	out := plansResponse{Currency: currency, Data: []planFigure{}}
	for _, p := range byPlan {
		out.Data = append(out.Data, *p)
	}
	slices.SortFunc(out.Data, func(a, b planFigure) int {
		return cmp.Or(cmp.Compare(b.MRR, a.MRR), cmp.Compare(a.PlanID, b.PlanID))
	})
	return out
}

type bucket struct {
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	StartingMRR  int64     `json:"starting_mrr"`
	New          int64     `json:"new"`
	Expansion    int64     `json:"expansion"`
	Contraction  int64     `json:"contraction"`
	Churn        int64     `json:"churn"`
	Reactivation int64     `json:"reactivation"`
	EndingMRR    int64     `json:"ending_mrr"`
}

type series struct {
	Currency            string    `json:"currency"`
	Interval            string    `json:"interval"`
	From                time.Time `json:"from"`
	To                  time.Time `json:"to"`
	StartingMRR         int64     `json:"starting_mrr"`
	EndingMRR           int64     `json:"ending_mrr"`
	ChurnRate           *string   `json:"churn_rate"`
	NetRevenueRetention *string   `json:"net_revenue_retention"`
	Buckets             []bucket  `json:"buckets"`
}

// boundaries lists from, the UTC calendar boundaries strictly inside (from, to), and to.
func boundaries(from, to time.Time, interval string) []time.Time {
	var b time.Time
	switch interval {
	case "day":
		b = time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC)
	case "week":
		b = time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC)
		for b.Weekday() != time.Monday {
			b = b.AddDate(0, 0, -1)
		}
	case "month":
		b = time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	out := []time.Time{from}
	for {
		switch interval {
		case "day":
			b = b.AddDate(0, 0, 1)
		case "week":
			b = b.AddDate(0, 0, 7)
		case "month":
			b = time.Date(b.Year(), b.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		}
		if !b.Before(to) {
			return append(out, to)
		}
		out = append(out, b)
	}
}

// mrrAt is the MRR at t: every movement strictly before t.
func (f fold) mrrAt(currency string, t time.Time, customer string) int64 {
	var sum int64
	for _, m := range f.movements {
		if m.currency == currency && m.at.Before(t) && (customer == "" || m.customer == customer) {
			sum += m.amount
		}
	}
	return sum
}

func (f fold) series(currency string, from, to time.Time, interval string) series {
	out := series{Currency: currency, Interval: interval, From: from, To: to,
		StartingMRR: f.mrrAt(currency, from, ""), EndingMRR: f.mrrAt(currency, to, "")}
	bounds := boundaries(from, to, interval)
	var churned int64
	for i := range len(bounds) - 1 {
		b := bucket{Start: bounds[i], End: bounds[i+1], StartingMRR: f.mrrAt(currency, bounds[i], ""),
			EndingMRR: f.mrrAt(currency, bounds[i+1], "")}
		for _, m := range f.movements {
			if m.currency != currency || m.at.Before(b.Start) || !m.at.Before(b.End) {
				continue
			}
			switch m.kind {
			case "new":
				b.New += m.amount
			case "expansion":
				b.Expansion += m.amount
			case "contraction":
				b.Contraction += -m.amount
			case "churn":
				b.Churn += -m.amount
				churned += -m.amount
			case "reactivation":
				b.Reactivation += m.amount
			}
		}
		out.Buckets = append(out.Buckets, b)
	}
	// NRR: the customers with MRR at from, their MRR at to over their MRR at from.
	var cohortFrom, cohortTo int64
	customers := map[string]bool{}
	for _, m := range f.movements {
		customers[m.customer] = true
	}
	for c := range customers {
		if at := f.mrrAt(currency, from, c); at > 0 {
			cohortFrom += at
			cohortTo += f.mrrAt(currency, to, c)
		}
	}
	if cohortFrom != out.StartingMRR {
		panic("the cohort's MRR at from is not the starting MRR")
	}
	out.ChurnRate = ratio(churned, out.StartingMRR)
	out.NetRevenueRetention = ratio(cohortTo, out.StartingMRR)
	return out
}

// ratio is num/den with four decimals, half to even, computed exactly; nil when den is 0.
func ratio(num, den int64) *string {
	if den == 0 {
		return nil
	}
	scaled := roundHalfEvenRat(new(big.Rat).Mul(big.NewRat(num, den), big.NewRat(10000, 1)))
	s := fmt.Sprintf("%d.%04d", new(big.Int).Div(scaled, big.NewInt(10000)), new(big.Int).Mod(scaled, big.NewInt(10000)).Int64())
	return &s
}

// getJSON GETs path with the read key and decodes a 200 answer into v (strictly: a field the
// test does not know fails it).
func (api *testAPI) getJSON(path string, v any) {
	api.t.Helper()
	r := api.must(http.StatusOK, "GET", path, nil, withKey(api.keys[httpapi.ScopeRead]))
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		api.t.Fatalf("GET %s: decode %s: %v", path, r.body, err)
	}
}

func show(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// TestDashboardMatchesIndependentFold is the dashboard's "done when": a random workload of
// several hundred commands, projected as the consumers would, and every figure the dashboard
// serves (summary, plans, MRR series over several ranges and intervals, the subscription list
// under several filters) equals what this test computes on its own from the event log.
func TestDashboardMatchesIndependentFold(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	end := runWorkload(t, api.db, rand.New(rand.NewPCG(2026, 11)), 800)
	events := testenv.WholeLog(t, api.db)
	projectAll(t, api.db, events)
	f := foldLog(t, events)

	// The workload must exercise what is compared.
	kinds := map[string]int{}
	for _, m := range f.movements {
		kinds[m.kind+" "+m.currency]++
	}
	statuses := map[domain.Status]int{}
	for _, s := range f.subs {
		statuses[s.Status]++
	}
	t.Logf("%d events, %d subscriptions %v, movements %v, until %s", len(events), len(f.subs), statuses, kinds, end)
	for _, k := range []string{"new USD", "expansion USD", "contraction USD", "churn USD", "reactivation USD", "new EUR"} {
		if kinds[k] == 0 {
			t.Errorf("the workload has no %s movement", k)
		}
	}
	for _, s := range []domain.Status{domain.StatusActive, domain.StatusTrialing, domain.StatusPaused, domain.StatusCanceled} {
		if statuses[s] == 0 {
			t.Errorf("the workload leaves no %s subscription", s)
		}
	}

	for _, currency := range []string{"", "USD", "EUR", "GBP"} {
		want := f.defaultCurrency()
		query := ""
		if currency != "" {
			want, query = currency, "?currency="+currency
		}
		var gotSummary summary
		api.getJSON("/v1/dashboard/summary"+query, &gotSummary)
		if wantSummary := f.summary(want); gotSummary != wantSummary {
			t.Errorf("summary%s:\n got %+v\nwant %+v", query, gotSummary, wantSummary)
		}
		var gotPlans plansResponse
		api.getJSON("/v1/dashboard/plans"+query, &gotPlans)
		if wantPlans := f.plans(want); !slices.Equal(gotPlans.Data, wantPlans.Data) || gotPlans.Currency != want {
			t.Errorf("plans%s:\n got %+v\nwant %+v", query, gotPlans, wantPlans)
		}
	}

	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	ranges := []struct {
		currency, from, to, interval string
	}{
		{"USD", "2025-12-01T00:00:00Z", "2026-06-01T00:00:00Z", "month"}, // from before the first event
		{"USD", "2026-01-20T13:17:00Z", "2026-03-11T05:00:00Z", "week"},  // cut at both ends
		{"USD", "2026-02-03T00:00:00Z", "2026-02-24T00:00:00Z", "day"},
		{"USD", "2026-02-15T06:30:00Z", "2026-04-02T00:00:00Z", "month"},
		{"EUR", "2026-02-01T00:00:00Z", "2026-05-01T00:00:00Z", "week"},
		{"", "2026-01-28T00:00:00Z", "2026-03-28T12:00:00Z", "week"},
		{"USD", "2026-01-06T00:00:00Z", "2026-03-20T00:00:00Z", ""},     // default interval: month
		{"USD", "2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z", "week"}, // after everything
		{"GBP", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "month"},
		{"USD", end.Add(-3 * time.Hour).Format(time.RFC3339), end.Add(time.Second).Format(time.RFC3339), "day"},
	}
	for _, rg := range ranges {
		q := url.Values{"from": {rg.from}, "to": {rg.to}}
		currency, interval := rg.currency, rg.interval
		if currency != "" {
			q.Set("currency", currency)
		} else {
			currency = f.defaultCurrency()
		}
		if interval != "" {
			q.Set("interval", interval)
		} else {
			interval = "month"
		}
		var got series
		api.getJSON("/v1/dashboard/mrr?"+q.Encode(), &got)
		want := f.series(currency, at(rg.from), at(rg.to), interval)
		if show(got) != show(want) {
			t.Errorf("mrr?%s:\n got %s\nwant %s", q.Encode(), show(got), show(want))
		}
		// The identity holds and the buckets chain, whatever the fold says.
		mrr := got.StartingMRR
		for _, b := range got.Buckets {
			if b.StartingMRR != mrr || b.StartingMRR+b.New+b.Expansion-b.Contraction-b.Churn+b.Reactivation != b.EndingMRR {
				t.Errorf("mrr?%s: bucket %+v breaks the identity or the chain", q.Encode(), b)
			}
			mrr = b.EndingMRR
		}
		if mrr != got.EndingMRR || !got.Buckets[0].Start.Equal(got.From) || !got.Buckets[len(got.Buckets)-1].End.Equal(got.To) {
			t.Errorf("mrr?%s: buckets do not cover [from, to) ending at ending_mrr", q.Encode())
		}
	}
	var mid series
	api.getJSON("/v1/dashboard/mrr?from=2026-01-20T00:00:00Z&to=2026-04-20T00:00:00Z&interval=month&currency=USD", &mid)
	if mid.ChurnRate == nil || mid.NetRevenueRetention == nil || *mid.ChurnRate == "0.0000" {
		t.Errorf("a mid-workload range has no churn or retention: %s; the comparison proves little", show(mid))
	}
	t.Logf("mid-workload USD: churn rate %s, net revenue retention %s", *mid.ChurnRate, *mid.NetRevenueRetention)

	checkList(t, api, f)
}

// checkList pages through GET /v1/subscriptions under several filters and compares the ids
// with the fold and each item with GET /v1/subscriptions/{id}?consistent=true (the aggregate).
func checkList(t *testing.T, api *testAPI, f fold) {
	t.Helper()
	aggregate := map[string]json.RawMessage{}
	for _, s := range f.subs {
		r := api.must(http.StatusOK, "GET", "/v1/subscriptions/"+s.ID+"?consistent=true", nil, withKey(api.keys[httpapi.ScopeRead]))
		aggregate[s.ID] = json.RawMessage(bytes.TrimSpace(r.body))
	}
	someCustomer := f.subs[len(f.subs)/2].CustomerID
	filters := []struct {
		query string
		keep  func(domain.Subscription) bool
	}{
		{"", func(domain.Subscription) bool { return true }},
		{"customer_id=" + someCustomer, func(s domain.Subscription) bool { return s.CustomerID == someCustomer }},
		{"status=active", func(s domain.Subscription) bool { return s.Status == domain.StatusActive }},
		{"status=paused&plan_id=pro_monthly", func(s domain.Subscription) bool {
			return s.Status == domain.StatusPaused && s.Plan.PlanID == "pro_monthly"
		}},
		{"plan_id=pro_monthly_eur", func(s domain.Subscription) bool { return s.Plan.PlanID == "pro_monthly_eur" }},
		{"customer_id=" + someCustomer + "&status=canceled", func(s domain.Subscription) bool {
			return s.CustomerID == someCustomer && s.Status == domain.StatusCanceled
		}},
		{"plan_id=enterprise", func(domain.Subscription) bool { return false }},
	}
	for _, flt := range filters {
		var want []string
		for _, s := range f.subs {
			if flt.keep(s) {
				want = append(want, s.ID)
			}
		}
		for _, limit := range []int{0, 1, 7, 100} {
			var got []string
			after := ""
			for page := 0; ; page++ {
				q, _ := url.ParseQuery(flt.query)
				if limit > 0 {
					q.Set("limit", fmt.Sprint(limit))
				}
				if after != "" {
					q.Set("starting_after", after)
				}
				var resp struct {
					Data              []json.RawMessage `json:"data"`
					HasMore           bool              `json:"has_more"`
					NextStartingAfter *string           `json:"next_starting_after"`
				}
				api.getJSON("/v1/subscriptions?"+q.Encode(), &resp)
				pageSize := cmp.Or(limit, 20)
				if len(resp.Data) > pageSize || (resp.HasMore && len(resp.Data) != pageSize) {
					t.Fatalf("?%s: page of %d with has_more %t", q.Encode(), len(resp.Data), resp.HasMore)
				}
				for _, item := range resp.Data {
					var s struct {
						ID string `json:"id"`
					}
					json.Unmarshal(item, &s)
					got = append(got, s.ID)
					if !bytes.Equal(item, aggregate[s.ID]) {
						t.Errorf("list item %s differs from the aggregate:\n%s\n%s", s.ID, item, aggregate[s.ID])
					}
				}
				if !resp.HasMore {
					if resp.NextStartingAfter != nil {
						t.Errorf("?%s: next_starting_after %q on the last page", q.Encode(), *resp.NextStartingAfter)
					}
					break
				}
				if resp.NextStartingAfter == nil || *resp.NextStartingAfter != got[len(got)-1] {
					t.Fatalf("?%s: next_starting_after %v, want the page's last id", q.Encode(), resp.NextStartingAfter)
				}
				after = *resp.NextStartingAfter
				if page > len(f.subs) {
					t.Fatal("paging does not end")
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("list ?%s limit %d: got %d ids %v\nwant %d ids %v", flt.query, limit, len(got), got, len(want), want)
			}
		}
	}
}

// TestGetSubscriptionReadsTheReadModel: GET /v1/subscriptions/{id} answers from the read model
// (so it can trail a command), falls back to the events for a subscription the projector has
// not seen, and reads the events with ?consistent=true.
func TestGetSubscriptionReadsTheReadModel(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	read := withKey(api.keys[httpapi.ScopeRead])
	created := api.create("pro_monthly", 2)
	path := "/v1/subscriptions/" + created.ID

	var got subscription
	api.must(http.StatusOK, "GET", path, nil, read).decode(t, &got)
	if got.Version != 1 || got.Seats != 2 {
		t.Fatalf("before any projection GET = %+v, want the created subscription from its events", got)
	}
	projectAll(t, api.db, testenv.WholeLog(t, api.db))
	api.must(http.StatusOK, "POST", path+"/seats", map[string]any{"seats": 5})

	api.must(http.StatusOK, "GET", path, nil, read).decode(t, &got)
	if got.Version != 1 || got.Seats != 2 {
		t.Errorf("GET from the read model = %+v, want version 1 (the seat change is not projected yet)", got)
	}
	api.must(http.StatusOK, "GET", path+"?consistent=true", nil, read).decode(t, &got)
	if got.Version != 2 || got.Seats != 5 {
		t.Errorf("GET ?consistent=true = %+v, want version 2 with 5 seats", got)
	}
	api.must(http.StatusOK, "GET", path+"?consistent=false", nil, read).decode(t, &got)
	if got.Version != 1 {
		t.Errorf("GET ?consistent=false = %+v, want the read model's version 1", got)
	}
	projectAll(t, api.db, testenv.WholeLog(t, api.db))
	var projected, consistent subscription
	api.must(http.StatusOK, "GET", path, nil, read).decode(t, &projected)
	api.must(http.StatusOK, "GET", path+"?consistent=true", nil, read).decode(t, &consistent)
	if projected.Version != 2 || show(projected) != show(consistent) {
		t.Errorf("after projection GET = %+v, want %+v", projected, consistent)
	}
	if r := api.do("GET", "/v1/subscriptions/"+uuid.NewString(), nil, read); r.status != http.StatusNotFound {
		t.Errorf("unknown id: %d %s", r.status, r.body)
	}
}

// TestDashboardOverNothing: with no subscriptions every figure is zero, in USD, and the rates
// are null.
func TestDashboardOverNothing(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	var s summary
	api.getJSON("/v1/dashboard/summary", &s)
	if s != (summary{Currency: "USD"}) {
		t.Errorf("summary = %+v", s)
	}
	var p plansResponse
	api.getJSON("/v1/dashboard/plans?currency=EUR", &p)
	if p.Currency != "EUR" || p.Data == nil || len(p.Data) != 0 {
		t.Errorf("plans = %+v", p)
	}
	var m series
	api.getJSON("/v1/dashboard/mrr?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z", &m)
	if m.Currency != "USD" || m.Interval != "month" || len(m.Buckets) != 12 || m.ChurnRate != nil || m.NetRevenueRetention != nil {
		t.Errorf("mrr = %s", show(m))
	}
	var l struct {
		Data              []json.RawMessage `json:"data"`
		HasMore           bool              `json:"has_more"`
		NextStartingAfter *string           `json:"next_starting_after"`
	}
	api.getJSON("/v1/subscriptions", &l)
	if l.Data == nil || len(l.Data) != 0 || l.HasMore || l.NextStartingAfter != nil {
		t.Errorf("list = %+v", l)
	}
}

// TestQueryParametersAreChecked: every query parameter fault is a problem naming the parameter.
func TestQueryParametersAreChecked(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	id := uuid.NewString()
	tests := []struct {
		path     string
		status   int
		pointers []string
	}{
		{"/v1/subscriptions?limit=0", 422, []string{"limit"}},
		{"/v1/subscriptions?limit=101", 422, []string{"limit"}},
		{"/v1/subscriptions?limit=ten", 400, []string{"limit"}},
		{"/v1/subscriptions?limit=", 400, []string{"limit"}},
		{"/v1/subscriptions?status=expired", 422, []string{"status"}},
		{"/v1/subscriptions?starting_after=42", 400, []string{"starting_after"}},
		{"/v1/subscriptions?customer_id=has%20space", 422, []string{"customer_id"}},
		{"/v1/subscriptions?plan_id=Pro", 422, []string{"plan_id"}},
		{"/v1/subscriptions?status=expired&plan_id=Pro&limit=0", 422, []string{"status", "plan_id", "limit"}},
		{"/v1/subscriptions?customer=cus_1", 400, []string{"customer"}},
		{"/v1/subscriptions?limit=5&limit=6", 400, []string{"limit"}},
		{"/v1/subscriptions?limit=x&status=expired", 400, []string{"limit"}}, // malformed first
		{"/v1/subscriptions/" + id + "?consistent=yes", 400, []string{"consistent"}},
		{"/v1/subscriptions/" + id + "?fresh=true", 400, []string{"fresh"}},
		{"/v1/subscriptions/nope?consistent=true", 400, []string{"id"}},
		{"/v1/dashboard/summary?currency=usd", 422, []string{"currency"}},
		{"/v1/dashboard/summary?currency=USD&currency=EUR", 400, []string{"currency"}},
		{"/v1/dashboard/plans?currency=EURO", 422, []string{"currency"}},
		{"/v1/dashboard/plans?from=2026-01-01T00:00:00Z", 400, []string{"from"}},
		{"/v1/dashboard/mrr", 422, []string{"from", "to"}},
		{"/v1/dashboard/mrr?from=yesterday&to=2026-01-01T00:00:00Z", 400, []string{"from"}},
		{"/v1/dashboard/mrr?from=2026-01-01&to=2026-02-01", 400, []string{"from", "to"}},
		{"/v1/dashboard/mrr?from=2026-02-01T00:00:00Z&to=2026-02-01T00:00:00Z", 422, []string{"to"}},
		{"/v1/dashboard/mrr?from=2026-03-01T00:00:00Z&to=2026-02-01T00:00:00Z", 422, []string{"to"}},
		{"/v1/dashboard/mrr?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&interval=year", 422, []string{"interval"}},
		{"/v1/dashboard/mrr?from=2026-01-01T00:00:00Z&to=2027-02-06T00:00:00Z&interval=day", 422, []string{"to"}},
		{"/v1/dashboard/mrr?from=1990-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", 422, []string{"to"}},
		{"/v1/dashboard/mrr?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&currency=eur", 422, []string{"currency"}},
	}
	for _, tt := range tests {
		r := api.do("GET", tt.path, nil, withKey(api.keys[httpapi.ScopeRead]))
		if r.status != tt.status {
			t.Errorf("GET %s: %d %s, want %d", tt.path, r.status, r.body, tt.status)
			continue
		}
		p := r.problem(t)
		var pointers []string
		for _, e := range p.Errors {
			pointers = append(pointers, e.Pointer)
			if e.Detail == "" {
				t.Errorf("GET %s: error without detail: %+v", tt.path, e)
			}
		}
		if !slices.Equal(pointers, tt.pointers) {
			t.Errorf("GET %s: pointers %v, want %v (%s)", tt.path, pointers, tt.pointers, r.body)
		}
		wantType := map[int]string{400: "/problems/invalid-parameter", 422: "/problems/invalid-fields"}[tt.status]
		if tt.pointers[0] == "id" {
			wantType = "/problems/invalid-id"
		}
		if p.Type != wantType {
			t.Errorf("GET %s: type %s, want %s", tt.path, p.Type, wantType)
		}
	}

	// 400 buckets is the most a series may have.
	var m series
	api.getJSON("/v1/dashboard/mrr?from=2026-01-01T00:00:00Z&to=2027-02-05T00:00:00Z&interval=day&currency=USD", &m)
	if len(m.Buckets) != 400 {
		t.Errorf("a 400-day range has %d buckets", len(m.Buckets))
	}
	api.getJSON("/v1/dashboard/mrr?from=2026-01-01T12:00:00.5Z&to=2026-01-03T00:00:00Z&interval=day", &m)
	if len(m.Buckets) != 2 || !m.From.Equal(time.Date(2026, 1, 1, 12, 0, 0, 500_000_000, time.UTC)) {
		t.Errorf("fractional from: %s", show(m))
	}
	// The dashboard needs only the read scope; a key without any scope is refused before.
	r := api.do("GET", "/v1/dashboard/summary", nil, withKey("bk_nonsense"))
	if r.status != http.StatusUnauthorized {
		t.Errorf("unknown key: %d", r.status)
	}
}

// TestARPARoundsHalfToEven: ARPA is MRR over paying customers, rounded half to even.
func TestARPARoundsHalfToEven(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	var a, b subscription
	api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_a", "plan_id": "starter_monthly", "seats": 1, "trial_days": 0, "payment_method": "pm_card_ok"}).decode(t, &a)
	api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_b", "plan_id": "pro_yearly", "seats": 1, "trial_days": 0, "payment_method": "pm_card_ok"}).decode(t, &b)
	projectAll(t, api.db, testenv.WholeLog(t, api.db))
	var s summary
	api.getJSON("/v1/dashboard/summary", &s)
	if s.MRR != 1500+4083 || s.Customers != 2 || s.ARPA != 2792 { // 2791.5: up to even
		t.Errorf("summary = %+v, want MRR 5583 over 2 customers, ARPA 2792", s)
	}
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+a.ID+"/change-plan",
		map[string]any{"plan_id": "starter_yearly", "timing": "immediate"})
	projectAll(t, api.db, testenv.WholeLog(t, api.db))
	api.getJSON("/v1/dashboard/summary", &s)
	if s.MRR != 1250+4083 || s.Customers != 2 || s.ARPA != 2666 { // 2666.5: down to even
		t.Errorf("summary = %+v, want MRR 5333 over 2 customers, ARPA 2666", s)
	}
}

// projectAll applies the events with every registered projector, as the consumers do.
func projectAll(t *testing.T, db *pgxpool.Pool, events []eventstore.Event) {
	t.Helper()
	for _, p := range projections.Projectors() {
		projectionstest.ApplyAll(t, db, p, events)
	}
}
