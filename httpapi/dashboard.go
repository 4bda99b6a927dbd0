package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/projections"
)

// The dashboard: revenue figures from the read models (subscription_view and mrr_movements),
// one currency per response. Each response is computed in one read-only REPEATABLE READ
// transaction, so its figures are consistent with each other even while projectors write.
// Definitions are documented in openapi.yaml; the equivalence test in dashboard_test.go checks
// every figure against an independent fold of the event store.

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// defaultCurrency is reported when there are no subscriptions at all.
const defaultCurrency = "USD"

// maxBuckets bounds the MRR series.
const maxBuckets = 400

// readModel runs fn in a read-only, repeatable-read transaction.
func (a *API) readModel(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, a.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// currency returns the ?currency= asked for, or the one with the most subscriptions (ties go
// to the alphabetically first), or USD when there are none.
func currency(ctx context.Context, tx pgx.Tx, asked *string) (string, error) {
	if asked != nil {
		return *asked, nil
	}
	var c string
	err := tx.QueryRow(ctx, `SELECT currency FROM `+projections.SubscriptionViewTable+`
		GROUP BY currency ORDER BY count(*) DESC, currency LIMIT 1`).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return defaultCurrency, nil
	}
	return c, err
}

func currencyParam(q *query) *string {
	return q.pattern("currency", currencyPattern, "must be an ISO 4217 code in upper case, like USD")
}

type summaryJSON struct {
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

func (a *API) dashboardSummary(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "currency")
	asked := currencyParam(q)
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}
	var s summaryJSON
	err := a.readModel(r.Context(), func(tx pgx.Tx) error {
		var err error
		if s.Currency, err = currency(r.Context(), tx, asked); err != nil {
			return err
		}
		return tx.QueryRow(r.Context(), `SELECT
				coalesce(sum(mrr), 0)::bigint,
				count(*) FILTER (WHERE status = 'active'),
				count(*) FILTER (WHERE status = 'trialing'),
				count(*) FILTER (WHERE status = 'past_due'),
				count(*) FILTER (WHERE status = 'paused'),
				count(*) FILTER (WHERE status = 'unpaid'),
				count(*) FILTER (WHERE status = 'canceled'),
				coalesce(sum(seats) FILTER (WHERE status IN ('active', 'past_due', 'trialing')), 0)::bigint,
				count(DISTINCT customer_id) FILTER (WHERE mrr > 0)
			FROM `+projections.SubscriptionViewTable+` WHERE currency = $1`, s.Currency).
			Scan(&s.MRR, &s.ActiveSubscriptions, &s.TrialingSubscriptions, &s.PastDueSubscriptions,
				&s.PausedSubscriptions, &s.UnpaidSubscriptions, &s.CanceledSubscriptions, &s.Seats, &s.Customers)
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	s.ARR = 12 * s.MRR
	if s.Customers > 0 {
		s.ARPA = projections.DivHalfEven(s.MRR, s.Customers)
	}
	writeJSON(w, http.StatusOK, s)
}

type planBreakdownJSON struct {
	Currency string           `json:"currency"`
	Data     []planFigureJSON `json:"data"`
}

type planFigureJSON struct {
	PlanID        string `json:"plan_id"`
	Subscriptions int64  `json:"subscriptions"`
	Seats         int64  `json:"seats"`
	MRR           int64  `json:"mrr"`
}

func (a *API) dashboardPlans(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "currency")
	asked := currencyParam(q)
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}
	out := planBreakdownJSON{Data: []planFigureJSON{}}
	err := a.readModel(r.Context(), func(tx pgx.Tx) error {
		var err error
		if out.Currency, err = currency(r.Context(), tx, asked); err != nil {
			return err
		}
		rows, err := tx.Query(r.Context(), `SELECT plan_id,
				count(*) FILTER (WHERE status <> 'canceled'),
				coalesce(sum(seats) FILTER (WHERE status IN ('active', 'past_due', 'trialing')), 0)::bigint,
				coalesce(sum(mrr), 0)::bigint
			FROM `+projections.SubscriptionViewTable+` WHERE currency = $1
			GROUP BY plan_id HAVING count(*) FILTER (WHERE status <> 'canceled') > 0
			ORDER BY 4 DESC, plan_id`, out.Currency)
		if err != nil {
			return err
		}
		out.Data, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (planFigureJSON, error) {
			var f planFigureJSON
			err := row.Scan(&f.PlanID, &f.Subscriptions, &f.Seats, &f.MRR)
			return f, err
		})
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

type mrrSeriesJSON struct {
	Currency            string          `json:"currency"`
	Interval            string          `json:"interval"`
	From                time.Time       `json:"from"`
	To                  time.Time       `json:"to"`
	StartingMRR         int64           `json:"starting_mrr"`
	EndingMRR           int64           `json:"ending_mrr"`
	ChurnRate           *string         `json:"churn_rate"`
	NetRevenueRetention *string         `json:"net_revenue_retention"`
	Buckets             []mrrBucketJSON `json:"buckets"`
}

type mrrBucketJSON struct {
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

var bucketIntervals = []string{"day", "week", "month"}

// bucketFloor is the start of the UTC-aligned bucket holding t: midnight, Monday midnight (ISO
// weeks) or the first of the month.
func bucketFloor(t time.Time, interval string) time.Time {
	y, m, d := t.UTC().Date()
	switch interval {
	case "day":
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case "week":
		day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	default:
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	}
}

// bucketAfter is the bucket boundary after the aligned boundary b.
func bucketAfter(b time.Time, interval string) time.Time {
	switch interval {
	case "day":
		return b.AddDate(0, 0, 1)
	case "week":
		return b.AddDate(0, 0, 7)
	default:
		return b.AddDate(0, 1, 0)
	}
}

// bucketBounds returns from, every aligned boundary strictly between from and to, and to; or
// false when that is more than maxBuckets buckets.
func bucketBounds(from, to time.Time, interval string) ([]time.Time, bool) {
	bounds := []time.Time{from}
	for b := bucketAfter(bucketFloor(from, interval), interval); b.Before(to); b = bucketAfter(b, interval) {
		if len(bounds) == maxBuckets {
			return nil, false
		}
		bounds = append(bounds, b)
	}
	return append(bounds, to), true
}

func (q *query) timestamp(name string) (time.Time, bool) {
	v, ok := q.lookup(name)
	if !ok {
		q.invalid = append(q.invalid, FieldError{name, "required: an RFC 3339 time like 2026-01-01T00:00:00Z"})
		return time.Time{}, false
	}
	t, err := parseRFC3339(v)
	if err != nil {
		q.malformed = append(q.malformed, FieldError{name, fmt.Sprintf("must be an RFC 3339 time like 2026-01-01T00:00:00Z, got %q", v)})
		return time.Time{}, false
	}
	// PostgreSQL keeps microseconds. Rounding up keeps "before t" exact for events, which are
	// at whole seconds.
	if tr := t.Truncate(time.Microsecond); !tr.Equal(t) {
		t = tr.Add(time.Microsecond)
	}
	return t.UTC(), true
}

func (a *API) dashboardMRR(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "from", "to", "interval", "currency")
	from, fromOK := q.timestamp("from")
	to, toOK := q.timestamp("to")
	interval := "month"
	if v := q.enum("interval", bucketIntervals); v != nil {
		interval = *v
	}
	asked := currencyParam(q)
	var bounds []time.Time
	if fromOK && toOK {
		if !from.Before(to) {
			q.invalid = append(q.invalid, FieldError{"to", "must be after from"})
		} else if b, ok := bucketBounds(from, to, interval); !ok {
			q.invalid = append(q.invalid, FieldError{"to", fmt.Sprintf("the range spans more than %d %ss; narrow it or use a longer interval", maxBuckets, interval)})
		} else {
			bounds = b
		}
	}
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}

	out := mrrSeriesJSON{Interval: interval, From: from, To: to, Buckets: make([]mrrBucketJSON, len(bounds)-1)}
	for i := range out.Buckets {
		out.Buckets[i].Start, out.Buckets[i].End = bounds[i], bounds[i+1]
	}
	var churned, cohortEnd int64
	err := a.readModel(r.Context(), func(tx pgx.Tx) error {
		ctx := r.Context()
		var err error
		if out.Currency, err = currency(ctx, tx, asked); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount), 0)::bigint FROM `+projections.MRRMovementsTable+`
			WHERE currency = $1 AND occurred_at < $2`, out.Currency, from).Scan(&out.StartingMRR); err != nil {
			return err
		}
		// width_bucket over the buckets' lower bounds: 1 for the first bucket, 2 for the next…
		rows, err := tx.Query(ctx, `SELECT width_bucket(occurred_at, $2::timestamptz[]), kind, sum(amount)::bigint
			FROM `+projections.MRRMovementsTable+` WHERE currency = $1 AND occurred_at >= $3 AND occurred_at < $4
			GROUP BY 1, 2`, out.Currency, bounds[:len(bounds)-1], from, to)
		if err != nil {
			return err
		}
		var bucket int
		var kind string
		var amount int64
		_, err = pgx.ForEachRow(rows, []any{&bucket, &kind, &amount}, func() error {
			if bucket < 1 || bucket > len(out.Buckets) {
				return fmt.Errorf("movement in bucket %d of %d", bucket, len(out.Buckets))
			}
			b := &out.Buckets[bucket-1]
			switch projections.MovementKind(kind) {
			case projections.MovementNew:
				b.New += amount
			case projections.MovementExpansion:
				b.Expansion += amount
			case projections.MovementContraction:
				b.Contraction -= amount
			case projections.MovementChurn:
				b.Churn -= amount
				churned -= amount
			case projections.MovementReactivation:
				b.Reactivation += amount
			default:
				return fmt.Errorf("unknown movement kind %q", kind)
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Net revenue retention's cohort: the customers with MRR at `from`, and their MRR at `to`.
		return tx.QueryRow(ctx, `WITH c AS (
				SELECT sum(amount) FILTER (WHERE occurred_at < $2) AS at_from, sum(amount) AS at_to
				FROM `+projections.MRRMovementsTable+` WHERE currency = $1 AND occurred_at < $3
				GROUP BY customer_id)
			SELECT coalesce(sum(at_to) FILTER (WHERE at_from > 0), 0)::bigint FROM c`, out.Currency, from, to).Scan(&cohortEnd)
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	mrr := out.StartingMRR
	for i := range out.Buckets {
		b := &out.Buckets[i]
		b.StartingMRR = mrr
		mrr += b.New + b.Expansion - b.Contraction - b.Churn + b.Reactivation
		b.EndingMRR = mrr
	}
	out.EndingMRR = mrr
	out.ChurnRate = projections.Rate(churned, out.StartingMRR)
	out.NetRevenueRetention = projections.Rate(cohortEnd, out.StartingMRR)
	writeJSON(w, http.StatusOK, out)
}
