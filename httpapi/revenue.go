package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/projections"
)

// GET /v1/dashboard/revenue: money invoiced, collected, refunded and credited, and what is
// outstanding, per currency and bucket, from the invoices read model's invoice_movements (one
// row per invoice event that moved money, with that event's contribution to each figure). The
// buckets are those of GET /v1/dashboard/mrr. Every currency is reported unless ?currency=
// picks one: revenue is summed per currency and a dashboard shows them side by side, so there
// is no default to choose.

type revenueJSON struct {
	Interval   string                `json:"interval"`
	From       time.Time             `json:"from"`
	To         time.Time             `json:"to"`
	Currencies []revenueCurrencyJSON `json:"currencies"`
}

type revenueCurrencyJSON struct {
	Currency            string              `json:"currency"`
	StartingOutstanding int64               `json:"starting_outstanding"`
	EndingOutstanding   int64               `json:"ending_outstanding"`
	Totals              revenueFiguresJSON  `json:"totals"`
	Buckets             []revenueBucketJSON `json:"buckets"`
}

// revenueFiguresJSON are the flows of money over a span of time.
type revenueFiguresJSON struct {
	Invoiced      int64 `json:"invoiced"`
	Collected     int64 `json:"collected"`
	Refunded      int64 `json:"refunded"`
	CreditGranted int64 `json:"credit_granted"`
	CreditApplied int64 `json:"credit_applied"`
	Voided        int64 `json:"voided"`
	Uncollectible int64 `json:"uncollectible"`
}

func (f *revenueFiguresJSON) add(g revenueFiguresJSON) {
	f.Invoiced += g.Invoiced
	f.Collected += g.Collected
	f.Refunded += g.Refunded
	f.CreditGranted += g.CreditGranted
	f.CreditApplied += g.CreditApplied
	f.Voided += g.Voided
	f.Uncollectible += g.Uncollectible
}

type revenueBucketJSON struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	revenueFiguresJSON
	StartingOutstanding int64 `json:"starting_outstanding"`
	EndingOutstanding   int64 `json:"ending_outstanding"`
}

// seriesRange reads and checks from, to and interval as GET /v1/dashboard/mrr does, and returns
// the bucket boundaries (nil when a fault was recorded in q). dashboardMRR has the same checks
// inline; it is left as it is so that this branch does not edit it under the dashboard's.
func seriesRange(q *query) (from, to time.Time, interval string, bounds []time.Time) {
	from, fromOK := q.timestamp("from")
	to, toOK := q.timestamp("to")
	interval = "month"
	if v := q.enum("interval", bucketIntervals); v != nil {
		interval = *v
	}
	if fromOK && toOK {
		if !from.Before(to) {
			q.invalid = append(q.invalid, FieldError{"to", "must be after from"})
		} else if b, ok := bucketBounds(from, to, interval); !ok {
			q.invalid = append(q.invalid, FieldError{"to", fmt.Sprintf("the range spans more than %d %ss; narrow it or use a longer interval", maxBuckets, interval)})
		} else {
			bounds = b
		}
	}
	return from, to, interval, bounds
}

func (a *API) dashboardRevenue(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "from", "to", "interval", "currency")
	from, to, interval, bounds := seriesRange(q)
	asked := currencyParam(q)
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}

	out := revenueJSON{Interval: interval, From: from, To: to, Currencies: []revenueCurrencyJSON{}}
	byCurrency := map[string]*revenueCurrencyJSON{}
	err := a.readModel(r.Context(), func(tx pgx.Tx) error {
		ctx := r.Context()
		var currencies []string
		if asked != nil {
			currencies = []string{*asked}
		} else {
			rows, err := tx.Query(ctx, `SELECT DISTINCT currency FROM `+projections.InvoiceMovementsTable+` ORDER BY 1`)
			if err != nil {
				return err
			}
			if currencies, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
		}
		out.Currencies = make([]revenueCurrencyJSON, len(currencies))
		for i, c := range currencies {
			cur := &out.Currencies[i]
			cur.Currency, cur.Buckets = c, make([]revenueBucketJSON, len(bounds)-1)
			for j := range cur.Buckets {
				cur.Buckets[j].Start, cur.Buckets[j].End = bounds[j], bounds[j+1]
			}
			byCurrency[c] = cur
		}

		rows, err := tx.Query(ctx, `SELECT currency, sum(outstanding)::bigint FROM `+projections.InvoiceMovementsTable+`
			WHERE currency = ANY($1) AND occurred_at < $2 GROUP BY currency`, currencies, from)
		if err != nil {
			return err
		}
		var currency string
		var amount int64
		if _, err := pgx.ForEachRow(rows, []any{&currency, &amount}, func() error {
			byCurrency[currency].StartingOutstanding = amount
			return nil
		}); err != nil {
			return err
		}

		// width_bucket over the buckets' lower bounds: 1 for the first bucket, 2 for the next…
		rows, err = tx.Query(ctx, `SELECT currency, width_bucket(occurred_at, $2::timestamptz[]),
				sum(invoiced)::bigint, sum(collected)::bigint, sum(refunded)::bigint, sum(credit_granted)::bigint,
				sum(credit_applied)::bigint, sum(voided)::bigint, sum(uncollectible)::bigint, sum(outstanding)::bigint
			FROM `+projections.InvoiceMovementsTable+` WHERE currency = ANY($1) AND occurred_at >= $3 AND occurred_at < $4
			GROUP BY 1, 2`, currencies, bounds[:len(bounds)-1], from, to)
		if err != nil {
			return err
		}
		var bucket int
		var f revenueFiguresJSON
		var outstanding int64
		_, err = pgx.ForEachRow(rows, []any{&currency, &bucket, &f.Invoiced, &f.Collected, &f.Refunded, &f.CreditGranted,
			&f.CreditApplied, &f.Voided, &f.Uncollectible, &outstanding}, func() error {
			cur := byCurrency[currency]
			if bucket < 1 || bucket > len(cur.Buckets) {
				return fmt.Errorf("invoice movement in bucket %d of %d", bucket, len(cur.Buckets))
			}
			b := &cur.Buckets[bucket-1]
			b.revenueFiguresJSON = f
			b.EndingOutstanding = outstanding // the change for now; made a level below
			return nil
		})
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for i := range out.Currencies {
		cur := &out.Currencies[i]
		level := cur.StartingOutstanding
		for j := range cur.Buckets {
			b := &cur.Buckets[j]
			b.StartingOutstanding = level
			level += b.EndingOutstanding
			b.EndingOutstanding = level
			cur.Totals.add(b.revenueFiguresJSON)
		}
		cur.EndingOutstanding = level
	}
	writeJSON(w, http.StatusOK, out)
}
