package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// readModels: every read model equals an independent fold of the store. The read models are the
// projectors' tables (projections/*.go), which the list, invoice-list, entitlements and dashboard
// endpoints query; they are read here directly, every row, and the dashboard's summary is also
// asked through the API (per currency) since it aggregates in SQL of its own.
//
//   - subscription_view: a row per subscription stream and no other, with the fold's customer,
//     plan, status, seats, MRR, features and version;
//   - mrr_movements: a subscription's movements add up to its folded MRR;
//   - subscription_entitlements: a row per subscription with its plan, status, features, version;
//   - invoice_view: a row per invoice stream and no other, with the fold's number, subscription,
//     status, total, attempts, amount paid and refunded, and version;
//   - invoice_movements: an invoice's movements add up to its folded amounts paid and refunded;
//   - GET /v1/dashboard/summary?currency=C: MRR is the sum of the folded MRRs in C;
//   - GET /v1/dashboard/revenue over all time: each currency's totals and outstanding are what
//     the invoices' histories moved (store.invoiceMoney).
func (c *checker) readModels(ctx context.Context) error {
	for _, check := range []func(context.Context) error{c.subscriptionView, c.entitlements, c.invoiceView, c.dashboard, c.revenue} {
		if err := check(ctx); err != nil {
			return err
		}
	}
	return nil
}

type subscriptionRow struct {
	CustomerID string
	PlanID     string
	Status     string
	Seats      int64
	MRR        int64
	Features   []string
	Version    int64
}

func (c *checker) subscriptionView(ctx context.Context) error {
	rows, err := c.db.Query(ctx, `SELECT id, customer_id, plan_id, status, seats, mrr, features, version FROM subscription_view`)
	if err != nil {
		return fmt.Errorf("check: read subscription_view: %w", err)
	}
	view := map[uuid.UUID]subscriptionRow{}
	var id uuid.UUID
	var r subscriptionRow
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.CustomerID, &r.PlanID, &r.Status, &r.Seats, &r.MRR, &r.Features, &r.Version},
		func() error { view[id] = r; return nil }); err != nil {
		return fmt.Errorf("check: read subscription_view: %w", err)
	}
	movements := map[uuid.UUID]int64{}
	rows, err = c.db.Query(ctx, `SELECT subscription_id, sum(amount)::bigint FROM mrr_movements GROUP BY subscription_id`)
	if err != nil {
		return fmt.Errorf("check: read mrr_movements: %w", err)
	}
	var sum int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &sum}, func() error { movements[id] = sum; return nil }); err != nil {
		return fmt.Errorf("check: read mrr_movements: %w", err)
	}
	for _, id := range sortedIDs(c.store, c.store.subs) {
		s := c.store.subs[id]
		want := subscriptionRow{CustomerID: s.CustomerID, PlanID: s.Plan.PlanID, Status: string(s.Status), Seats: s.Seats,
			MRR: s.MRR(), Features: sortedCopy(s.Plan.Features), Version: s.Version}
		got, ok := view[id]
		delete(view, id)
		if !ok {
			c.report(CheckReadModel, "subscription_view has no row for subscription %s (folds to %+v)", id, want)
			continue
		}
		got.Features = sortedCopy(got.Features)
		if !equalSubscriptionRows(got, want) {
			c.report(CheckReadModel, "subscription_view row %s is %+v, the stream folds to %+v", id, got, want)
		}
		if movements[id] != s.MRR() {
			c.report(CheckReadModel, "mrr_movements of subscription %s add up to %d, its folded MRR is %d", id, movements[id], s.MRR())
		}
	}
	for _, id := range sortedKeys(view) {
		c.report(CheckReadModel, "subscription_view has a row for %s, which has no stream", id)
	}
	return nil
}

func equalSubscriptionRows(a, b subscriptionRow) bool {
	return a.CustomerID == b.CustomerID && a.PlanID == b.PlanID && a.Status == b.Status && a.Seats == b.Seats &&
		a.MRR == b.MRR && slices.Equal(a.Features, b.Features) && a.Version == b.Version
}

func (c *checker) entitlements(ctx context.Context) error {
	type row struct {
		PlanID   string
		Status   string
		Features []string
		Version  int64
	}
	rows, err := c.db.Query(ctx, `SELECT subscription_id, plan_id, status, features, version FROM subscription_entitlements`)
	if err != nil {
		return fmt.Errorf("check: read subscription_entitlements: %w", err)
	}
	table := map[uuid.UUID]row{}
	var id uuid.UUID
	var r row
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.PlanID, &r.Status, &r.Features, &r.Version},
		func() error { table[id] = r; return nil }); err != nil {
		return fmt.Errorf("check: read subscription_entitlements: %w", err)
	}
	for _, id := range sortedIDs(c.store, c.store.subs) {
		s := c.store.subs[id]
		want := row{PlanID: s.Plan.PlanID, Status: string(s.Status), Features: sortedCopy(s.Plan.Features), Version: s.Version}
		got, ok := table[id]
		delete(table, id)
		if !ok {
			c.report(CheckReadModel, "subscription_entitlements has no row for subscription %s (folds to %+v)", id, want)
			continue
		}
		got.Features = sortedCopy(got.Features)
		if got.PlanID != want.PlanID || got.Status != want.Status || !slices.Equal(got.Features, want.Features) || got.Version != want.Version {
			c.report(CheckReadModel, "subscription_entitlements row %s is %+v, the stream folds to %+v", id, got, want)
		}
	}
	for _, id := range sortedKeys(table) {
		c.report(CheckReadModel, "subscription_entitlements has a row for %s, which has no stream", id)
	}
	return nil
}

type invoiceRow struct {
	Number         string
	SubscriptionID string
	Status         string
	Total          int64
	Attempts       int
	AmountPaid     int64
	AmountRefunded int64
	Version        int64
}

func (c *checker) invoiceView(ctx context.Context) error {
	rows, err := c.db.Query(ctx, `SELECT id, number, subscription_id::text, status, total, attempts, amount_paid, amount_refunded, version
		FROM invoice_view`)
	if err != nil {
		return fmt.Errorf("check: read invoice_view: %w", err)
	}
	view := map[uuid.UUID]invoiceRow{}
	var id uuid.UUID
	var r invoiceRow
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.Number, &r.SubscriptionID, &r.Status, &r.Total, &r.Attempts, &r.AmountPaid,
		&r.AmountRefunded, &r.Version}, func() error { view[id] = r; return nil }); err != nil {
		return fmt.Errorf("check: read invoice_view: %w", err)
	}
	type sums struct{ collected, refunded int64 }
	movements := map[uuid.UUID]sums{}
	rows, err = c.db.Query(ctx, `SELECT invoice_id, sum(collected)::bigint, sum(refunded)::bigint FROM invoice_movements GROUP BY invoice_id`)
	if err != nil {
		return fmt.Errorf("check: read invoice_movements: %w", err)
	}
	var m sums
	if _, err := pgx.ForEachRow(rows, []any{&id, &m.collected, &m.refunded}, func() error { movements[id] = m; return nil }); err != nil {
		return fmt.Errorf("check: read invoice_movements: %w", err)
	}
	for _, id := range sortedIDs(c.store, c.store.invoices) {
		inv := c.store.invoices[id]
		want := invoiceRow{Number: inv.Number, SubscriptionID: inv.SubscriptionID, Status: string(inv.Status), Total: inv.Total,
			Attempts: inv.Attempts, AmountPaid: inv.AmountPaid, AmountRefunded: inv.AmountRefunded, Version: inv.Version}
		got, ok := view[id]
		delete(view, id)
		if !ok {
			c.report(CheckReadModel, "invoice_view has no row for invoice %s (folds to %+v)", id, want)
			continue
		}
		if got != want {
			c.report(CheckReadModel, "invoice_view row %s is %+v, the stream folds to %+v", id, got, want)
		}
		if m := movements[id]; m.collected != inv.AmountPaid || m.refunded != inv.AmountRefunded {
			c.report(CheckReadModel, "invoice_movements of invoice %s add up to collected %d, refunded %d; the fold says %d, %d",
				id, m.collected, m.refunded, inv.AmountPaid, inv.AmountRefunded)
		}
	}
	for _, id := range sortedKeys(view) {
		c.report(CheckReadModel, "invoice_view has a row for %s, which has no stream", id)
	}
	return nil
}

// dashboard asks every billingd for the summary of each currency the folds know, and the first
// one for each customer's entitlements: the union of the features of its active and trialing
// subscriptions.
func (c *checker) dashboard(ctx context.Context) error {
	if err := c.customerEntitlements(ctx); err != nil {
		return err
	}
	want := map[string]int64{}
	for _, s := range c.store.subs {
		want[s.Plan.Currency] += s.MRR()
	}
	currencies := sortedKeys(want)
	for _, base := range c.target.APIURLs {
		for _, cur := range currencies {
			var summary struct {
				Currency string `json:"currency"`
				MRR      int64  `json:"mrr"`
			}
			status, err := c.get(ctx, base, "/v1/dashboard/summary?currency="+url.QueryEscape(cur), &summary)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				c.report(CheckReadModel, "%s: GET /v1/dashboard/summary?currency=%s answered %d", base, cur, status)
				continue
			}
			if summary.MRR != want[cur] {
				c.report(CheckReadModel, "%s: dashboard MRR in %s is %d, the folds add up to %d", base, cur, summary.MRR, want[cur])
			}
		}
	}
	return nil
}

// revenue asks every billingd for the revenue figures over all time: monthly buckets from the
// first invoice event's month to just after the last.
func (c *checker) revenue(ctx context.Context) error {
	want := c.store.invoiceMoney()
	var first, last time.Time
	for _, e := range c.store.events {
		if e.StreamType != eventstore.InvoiceStream {
			continue
		}
		if first.IsZero() || e.OccurredAt.Before(first) {
			first = e.OccurredAt
		}
		if e.OccurredAt.After(last) {
			last = e.OccurredAt
		}
	}
	if first.IsZero() {
		return nil // no invoices: nothing to add up
	}
	from := time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC)
	path := "/v1/dashboard/revenue?interval=month&from=" + from.Format(time.RFC3339) + "&to=" + last.Add(time.Second).Format(time.RFC3339)
	for _, base := range c.target.APIURLs {
		var got struct {
			Currencies []struct {
				Currency            string `json:"currency"`
				StartingOutstanding int64  `json:"starting_outstanding"`
				EndingOutstanding   int64  `json:"ending_outstanding"`
				Totals              struct {
					Invoiced      int64 `json:"invoiced"`
					Collected     int64 `json:"collected"`
					Refunded      int64 `json:"refunded"`
					CreditGranted int64 `json:"credit_granted"`
					CreditApplied int64 `json:"credit_applied"`
					Voided        int64 `json:"voided"`
					Uncollectible int64 `json:"uncollectible"`
				} `json:"totals"`
			} `json:"currencies"`
		}
		status, err := c.get(ctx, base, path, &got)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			c.report(CheckReadModel, "%s: GET %s answered %d", base, path, status)
			continue
		}
		seen := map[string]bool{}
		for _, cur := range got.Currencies {
			seen[cur.Currency] = true
			t := cur.Totals
			answer := money{t.Invoiced, t.Collected, t.Refunded, t.CreditGranted, t.CreditApplied, t.Voided, t.Uncollectible, cur.EndingOutstanding}
			if w := want[cur.Currency]; answer != w || cur.StartingOutstanding != 0 {
				c.report(CheckReadModel, "%s: revenue in %s is %+v (starting outstanding %d); the invoices moved %+v",
					base, cur.Currency, answer, cur.StartingOutstanding, w)
			}
		}
		for _, cur := range sortedKeys(want) {
			if !seen[cur] {
				c.report(CheckReadModel, "%s: revenue has no %s; the invoices moved %+v", base, cur, want[cur])
			}
		}
	}
	return nil
}

// get decodes a GET's answer into out when it is 200.
func (c *checker) get(ctx context.Context, base, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.target.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("check: GET %s%s: %w", base, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return 0, fmt.Errorf("check: GET %s%s: %w", base, path, err)
		}
	}
	return resp.StatusCode, nil
}

func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

func sortedKeys[K interface{ ~string | uuid.UUID }, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	return out
}

func (c *checker) customerEntitlements(ctx context.Context) error {
	if len(c.target.APIURLs) == 0 {
		return nil
	}
	want := map[string]map[string]bool{}
	for _, s := range c.store.subs {
		if want[s.CustomerID] == nil {
			want[s.CustomerID] = map[string]bool{}
		}
		if s.Status == domain.StatusActive || s.Status == domain.StatusTrialing {
			for _, f := range s.Plan.Features {
				want[s.CustomerID][f] = true
			}
		}
	}
	base := c.target.APIURLs[0]
	for _, customer := range sortedKeys(want) {
		var got struct {
			Features []string `json:"features"`
		}
		path := "/v1/customers/" + url.PathEscape(customer) + "/entitlements"
		status, err := c.get(ctx, base, path, &got)
		if err != nil {
			return err
		}
		features := sortedKeys(want[customer])
		switch {
		case status != http.StatusOK:
			c.report(CheckReadModel, "%s: GET %s answered %d", base, path, status)
		case !slices.Equal(sortedCopy(got.Features), features):
			c.report(CheckReadModel, "%s: customer %s is entitled to %v, its live subscriptions' folds to %v", base, customer, got.Features, features)
		}
	}
	return nil
}
