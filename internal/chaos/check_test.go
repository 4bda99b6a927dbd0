package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// workload drives a service through the flows the checks look at and records every answer to
// a request carrying an Idempotency-Key as an Ack, as the fault suite's load does.
type workload struct {
	s    *service
	acks []Ack
	n    int
}

func (w *workload) post(path string, body any, want ...int) json.RawMessage {
	w.s.t.Helper()
	w.n++
	key := fmt.Sprintf("checker-%d", w.n)
	status, answer, err := w.s.do(w.n, http.MethodPost, path, key, body)
	if err != nil {
		w.s.t.Fatalf("POST %s: %v", path, err)
	}
	ok := len(want) == 0
	for _, s := range want {
		ok = ok || s == status
	}
	if !ok {
		w.s.t.Fatalf("POST %s answered %d %s, want %v", path, status, answer, want)
	}
	raw, _ := json.Marshal(body)
	if status < 300 || status == http.StatusPaymentRequired {
		w.acks = append(w.acks, Ack{Key: key, Method: http.MethodPost, Path: path, Body: raw, Status: status, Answer: answer, At: time.Now()})
	}
	return answer
}

func (w *workload) create(customer, plan string, seats, trialDays int, pm string) string {
	w.s.t.Helper()
	var s struct{ ID string }
	answer := w.post("/v1/subscriptions", map[string]any{"customer_id": customer, "plan_id": plan, "seats": seats,
		"trial_days": trialDays, "payment_method": pm}, http.StatusCreated)
	if err := json.Unmarshal(answer, &s); err != nil {
		w.s.t.Fatal(err)
	}
	return s.ID
}

func (w *workload) advanceClock(d time.Duration) {
	w.s.t.Helper()
	status, body, err := w.s.do(0, http.MethodGet, "/v1/test/clock", "", nil)
	var clock struct {
		Now time.Time `json:"now"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(body, &clock) != nil {
		w.s.t.Fatalf("GET /v1/test/clock: %d %s %v", status, body, err)
	}
	status, body, err = w.s.do(0, http.MethodPost, "/v1/test/clock", "", map[string]any{"now": clock.Now.Add(d)})
	if err != nil || status != http.StatusOK {
		w.s.t.Fatalf("POST /v1/test/clock: %d %s %v", status, body, err)
	}
}

// drive runs a few dozen requests: creates (one with a trial), a paid seat upgrade 2→3, a paid
// plan change, a declined upgrade, a downgrade with its credit, a cancel, a pause, a replay, and
// a month and a half of renewals on the test clock.
func (w *workload) drive() {
	subs := make([]string, 8)
	for i := range subs {
		plan := []string{"pro_monthly", "starter_monthly", "business_monthly"}[i%3]
		trial := 0
		if i == 7 {
			trial = 14
		}
		subs[i] = w.create(fmt.Sprintf("cus_%d", i), plan, 2+i%3, trial, "pm_card_ok")
	}
	path := func(i int, cmd string) string { return "/v1/subscriptions/" + subs[i] + "/" + cmd }
	w.post(path(0, "seats"), map[string]any{"seats": 3}, http.StatusOK) // paid: the saga
	w.post(path(1, "change-plan"), map[string]any{"plan_id": "business_monthly"}, http.StatusOK)
	w.post(path(2, "seats"), map[string]any{"seats": 1}, http.StatusOK) // a credit
	w.post(path(3, "cancel"), map[string]any{"at_period_end": false}, http.StatusOK)
	w.post(path(4, "pause"), map[string]any{}, http.StatusOK)
	w.post(path(5, "payment-method"), map[string]any{"payment_method": "pm_card_declined"}, http.StatusOK)
	w.post(path(5, "seats"), map[string]any{"seats": 9}, http.StatusPaymentRequired)
	w.post(path(7, "seats"), map[string]any{"seats": 5}, http.StatusOK) // free in the trial
	w.post(path(6, "cancel"), map[string]any{"at_period_end": true}, http.StatusOK)

	// A replay: the same key and request answer the first answer, with no second effect.
	w.n--
	w.post(path(6, "cancel"), map[string]any{"at_period_end": true}, http.StatusOK)
	w.n++

	w.advanceClock(20 * 24 * time.Hour) // the trial converts
	w.post(path(0, "seats"), map[string]any{"seats": 2}, http.StatusOK)
	w.advanceClock(25 * 24 * time.Hour) // renewals
	w.post(path(1, "seats"), map[string]any{"seats": 4}, http.StatusOK)
}

type checkFixture struct {
	t   *testing.T
	s   *service
	db  *pgxpool.Pool
	rdb *redis.Client
}

func (f checkFixture) check(acks []Ack) []Violation {
	f.t.Helper()
	f.s.settle()
	found, err := Check(context.Background(), f.s.target, acks)
	if err != nil {
		f.t.Fatalf("Check: %v", err)
	}
	return found
}

// TestCheckFindsEachCorruption builds a real service state, checks it finds nothing there, then
// corrupts one thing at a time and checks that exactly the check meant to see it reports it. The
// corruptions accumulate (undoing some would need the service's cooperation), so each step
// compares with the violations of the step before: what is new must all come from its check.
func TestCheckFindsEachCorruption(t *testing.T) {
	t.Parallel()
	s := startForCheck(t, 1)
	w := &workload{s: s}
	w.drive()
	ctx := context.Background()
	db, err := pgxpool.New(ctx, s.target.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	opts, _ := redis.ParseURL(s.target.RedisURL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	f := checkFixture{t: t, s: s, db: db, rdb: rdb}

	before := f.check(w.acks)
	for _, v := range before {
		t.Errorf("uncorrupted state: %s: %s", v.Check, v.Detail)
	}
	if t.Failed() {
		t.FailNow()
	}
	var statuses []int
	for _, a := range w.acks {
		statuses = append(statuses, a.Status)
	}
	t.Logf("%d acks (statuses %v); the uncorrupted state passes every check", len(w.acks), statuses)

	acks := w.acks
	steps := []struct {
		name    string
		check   string
		corrupt func(t *testing.T)
	}{
		{"an ack of a subscription that does not exist", CheckAckedInStore, func(t *testing.T) {
			acks = append(acks, Ack{Key: "ghost", Method: http.MethodPost, Path: "/v1/subscriptions", Status: http.StatusCreated,
				Answer: json.RawMessage(fmt.Sprintf(`{"id": %q, "version": 1}`, uuid.New()))})
		}},
		{"an ack answering a state the stream never had", CheckAckedInStore, func(t *testing.T) {
			for _, a := range w.acks {
				if strings.HasSuffix(a.Path, "/pause") {
					a.Answer = json.RawMessage(strings.Replace(string(a.Answer), `"status":"paused"`, `"status":"active"`, 1))
					acks = append(acks, a)
					return
				}
			}
			t.Fatal("no pause among the acks")
		}},
		{"an ack whose answer another request's events gave", CheckAckedInStore, func(t *testing.T) {
			a := w.acks[len(w.acks)-1]
			a.Key = "someone-else"
			acks = append(acks, a)
		}},
		{"a subscription_view row modified", CheckReadModel, func(t *testing.T) {
			mustExec(t, db, `UPDATE subscription_view SET seats = seats + 1 WHERE id = (SELECT id FROM subscription_view ORDER BY id LIMIT 1)`)
		}},
		{"an invoice_view row deleted", CheckReadModel, func(t *testing.T) {
			mustExec(t, db, `DELETE FROM invoice_view WHERE id = (SELECT id FROM invoice_view ORDER BY id LIMIT 1)`)
		}},
		{"an entitlements row deleted", CheckReadModel, func(t *testing.T) {
			mustExec(t, db, `DELETE FROM subscription_entitlements WHERE subscription_id = (SELECT subscription_id FROM subscription_entitlements ORDER BY subscription_id DESC LIMIT 1)`)
		}},
		{"an invoice movement's invoiced amount changed", CheckReadModel, func(t *testing.T) {
			// invoice_view and the movements' collected and refunded sums are untouched: only the
			// revenue figures show it.
			mustExec(t, db, `UPDATE invoice_movements SET invoiced = invoiced + 1
				WHERE event_id = (SELECT event_id FROM invoice_movements WHERE invoiced > 0 ORDER BY event_id LIMIT 1)`)
		}},
		{"credit granted that no invoice gave back", CheckLedger, func(t *testing.T) {
			// A customer.credit_granted at the next version of a customer stream, its balance
			// raised by 100: a well-formed event that no void explains.
			mustExec(t, db, `INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
				SELECT e.stream_id, e.stream_type, e.version + 1, gen_random_uuid(), 'customer.credit_granted', 1,
				       jsonb_build_object('customer_id', e.data->'customer_id', 'invoice_id', e.data->'invoice_id',
				                          'currency', e.data->'currency', 'amount', 100, 'balance', (e.data->>'balance')::bigint + 100,
				                          'reason', 'unexplained', 'granted_at', e.data->'issued_at'),
				       e.metadata - 'idempotency_key', e.occurred_at
				FROM events e
				WHERE e.stream_type = 'customer' AND e.type = 'customer.invoice_issued'
				  AND e.version = (SELECT max(version) FROM events WHERE stream_id = e.stream_id)
				ORDER BY e.stream_id LIMIT 1`)
		}},
		{"a request's event appended again by another transaction", CheckIdempotency, func(t *testing.T) {
			// The last event of a subscription stream a request appended (not its creation), copied
			// to the stream's next version with its metadata, idempotency key included: what a
			// retry that escaped the idempotency record would write.
			mustExec(t, db, `INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
				SELECT e.stream_id, e.stream_type, e.version + 1, gen_random_uuid(), e.type, e.schema_version, e.data, e.metadata, e.occurred_at
				FROM events e
				WHERE e.stream_type = 'subscription' AND e.type <> 'subscription.created' AND e.metadata ? 'idempotency_key'
				  AND e.metadata->>'source' <> 'upgrade saga'
				  AND e.version = (SELECT max(version) FROM events WHERE stream_id = e.stream_id)
				ORDER BY e.stream_id LIMIT 1`)
		}},
		{"an upgrade stuck in charged", CheckSaga, func(t *testing.T) {
			stuckUpgrade(t, db)
		}},
		{"a charge the books do not show", CheckSaga, func(t *testing.T) {
			// The gateway took money for an invoice under a key billing uses (a later attempt),
			// and no event records it.
			mustExec(t, db, `INSERT INTO sandbox_charges (idempotency_key, id, customer_id, payment_method, amount, currency,
					description, status, decline_code, decline_message)
				SELECT 'invoice:' || id || ':attempt:9', 'ch_unrecorded', customer_id, 'pm_card_ok', 100, currency, 'unrecorded',
					'succeeded', '', ''
				FROM invoice_view ORDER BY id LIMIT 1`)
		}},
		{"a version missing", CheckVersionGap, func(t *testing.T) {
			// A customer stream's last event copied two versions further on: the stream lacks a
			// version. (Deleting one would leave its entry in Redis, which stream-once reports
			// too; a customer stream, because no read model folds customers.)
			mustExec(t, db, `INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
				SELECT e.stream_id, e.stream_type, e.version + 2, gen_random_uuid(), e.type, e.schema_version, e.data,
				       e.metadata - 'idempotency_key', e.occurred_at
				FROM events e
				WHERE e.stream_type = 'customer' AND e.type = 'customer.invoice_issued'
				  AND e.version = (SELECT max(version) FROM events WHERE stream_id = e.stream_id)
				ORDER BY e.stream_id LIMIT 1`)
		}},
		// Last: an entry id above the relay's makes Redis refuse its later entries to partition 0.
		{"a stream entry published twice", CheckStreamOnce, func(t *testing.T) {
			key := projections.Streams{Prefix: s.target.RedisPrefix, Partitions: s.target.StreamPartitions}.Key(0)
			entries, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
			if err != nil || len(entries) == 0 {
				t.Fatalf("partition 0: %v %v", entries, err)
			}
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: entries[0].Values}).Err(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.corrupt(t)
			after := f.check(acks)
			fresh := newViolations(before, after)
			if len(fresh) == 0 {
				t.Errorf("%s: no check reported it", step.check)
			}
			for _, v := range fresh {
				if v.Check != step.check {
					t.Errorf("reported by %s, want only %s: %s", v.Check, step.check, v.Detail)
				} else {
					t.Logf("%s: %s", v.Check, v.Detail)
				}
			}
			before = after
		})
	}
}

// newViolations returns the violations in after that are not in before.
func newViolations(before, after []Violation) []Violation {
	old := map[Violation]bool{}
	for _, v := range before {
		old[v] = true
	}
	var out []Violation
	for _, v := range after {
		if !old[v] {
			out = append(out, v)
		}
	}
	return out
}

func mustExec(t *testing.T, db *pgxpool.Pool, sql string) {
	t.Helper()
	tag, err := db.Exec(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("%s: %d rows, want 1", sql, tag.RowsAffected())
	}
}

// stuckUpgrade appends, with the event store's own Append, an upgrade of an active
// subscription that was invoiced and charged and then went no further: what a saga abandoned
// after the charge would leave (it has no billing_schedule row, so no process resumes it).
func stuckUpgrade(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	var subID uuid.UUID
	if err := db.QueryRow(ctx, `SELECT id FROM subscription_view WHERE status = 'active' ORDER BY id LIMIT 1`).Scan(&subID); err != nil {
		t.Fatal(err)
	}
	sub, _, err := eventstore.LoadSubscription(ctx, db, subID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := sub.UpdatedAt
	id := uuid.Must(uuid.NewV7())
	change := domain.SeatsChanged{FromSeats: sub.Seats, Seats: sub.Seats + 1, ChangedAt: now}
	events, err := eventstore.EncodeEvents([]domain.Event{
		domain.UpgradeStarted{UpgradeID: id.String(), SubscriptionID: sub.ID, CustomerID: sub.CustomerID,
			SubscriptionVersion: sub.Version, SeatsChange: &change, Amount: 100, Currency: sub.Plan.Currency,
			PaymentMethod: sub.PaymentMethod, StartedAt: now},
		domain.UpgradeInvoiced{InvoiceID: uuid.NewString(), Total: 100, At: now},
		domain.UpgradeCharged{ChargeID: "ch_stuck", Amount: 100, At: now},
	}, eventstore.Metadata{Actor: "checker test", Source: "stuck upgrade"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.Append(ctx, db, eventstore.Stream{ID: id, Type: eventstore.UpgradeStream}, 0, events); err != nil {
		t.Fatal(err)
	}
}
