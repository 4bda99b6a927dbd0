package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/httpapi"
)

// createCase is one of many concurrent create requests.
type createCase struct {
	customer string
	key      string // Idempotency-Key, "" for none
	body     map[string]any
	trial    bool
	kind     string // "create"; "twin": same key and body as another case; "reused": same key, another body; "invalid"
}

// concurrentCreates mixes valid creates of a few customers (so that batches hold several creates
// of one customer), with and without keys and trials, requests sent twice with one key, keys
// reused with another body, and invalid requests.
func concurrentCreates() []createCase {
	var cases []createCase
	body := func(customer string, seats, trialDays int) map[string]any {
		return map[string]any{"customer_id": customer, "plan_id": "pro_monthly", "seats": seats,
			"trial_days": trialDays, "payment_method": "pm_card_ok"}
	}
	for i := range 36 {
		c := createCase{customer: fmt.Sprintf("cus_%d", i%6), kind: "create", trial: i%5 == 0}
		c.body = body(c.customer, 1+i%3, map[bool]int{true: 14}[c.trial])
		if i%2 == 0 {
			c.key = fmt.Sprintf("create-%d", i)
		}
		cases = append(cases, c)
	}
	for j := range 6 {
		c := createCase{customer: fmt.Sprintf("cus_%d", j), key: fmt.Sprintf("twin-%d", j), kind: "twin"}
		c.body = body(c.customer, 2, 0)
		cases = append(cases, c, c)
	}
	for j := range 3 {
		a := createCase{customer: fmt.Sprintf("cus_%d", j), key: fmt.Sprintf("reused-%d", j), kind: "reused"}
		b := a
		a.body, b.body = body(a.customer, 1, 0), body(a.customer, 5, 0)
		cases = append(cases, a, b)
	}
	for j, bad := range []map[string]any{
		body("cus_0", 0, 0),
		{"customer_id": "cus_1", "plan_id": "no_such_plan", "seats": 1},
		body("not a customer id", 1, 0),
		body("cus_2", 1, -3),
	} {
		c := createCase{customer: "", body: bad, kind: "invalid"}
		if j%2 == 0 {
			c.key = fmt.Sprintf("invalid-%d", j)
		}
		cases = append(cases, c)
	}
	return cases
}

// sendAll sends every case at once, each with its own correlation id.
func sendAll(api *testAPI, cases []createCase) []response {
	out := make([]response, len(cases))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() {
			opts := []requestOption{withHeader("X-Correlation-ID", fmt.Sprintf("corr-%d", i))}
			if c.key != "" {
				opts = append(opts, withHeader("Idempotency-Key", c.key))
			}
			<-start
			out[i] = api.do("POST", "/v1/subscriptions", c.body, opts...)
		})
	}
	close(start)
	wg.Wait()
	return out
}

// checkCreates checks every answer against what the request would have got alone, and the store
// against the answers: each acknowledged create is stored once, with its metadata and (without
// a trial) its first invoice, numbered without gaps in its customer's series. It returns how
// many subscriptions were created.
func checkCreates(t *testing.T, api *testAPI, cases []createCase, got []response) int {
	t.Helper()
	type acked struct {
		c           createCase
		correlation string
	}
	created := map[string]acked{} // subscription id → the request that created it
	ack := func(i int, r response) {
		var s subscription
		r.decode(t, &s)
		if s.CustomerID != cases[i].customer || (s.Status == "trialing") != cases[i].trial || s.Version != 1 {
			t.Errorf("case %d: created %+v for %v", i, s, cases[i].body)
		}
		if r.header.Get("Idempotent-Replayed") == "" {
			if _, dup := created[s.ID]; dup {
				t.Errorf("case %d: subscription %s acknowledged as created twice", i, s.ID)
			}
			created[s.ID] = acked{cases[i], fmt.Sprintf("corr-%d", i)}
		}
	}
	byKey := map[string][]int{}
	for i, c := range cases {
		r := got[i]
		switch c.kind {
		case "create":
			if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("case %d (%v): %d %s, want 201", i, c.body, r.status, r.body)
				continue
			}
			ack(i, r)
		case "invalid":
			if r.status != http.StatusUnprocessableEntity || r.problem(t).Type != "/problems/invalid-fields" {
				t.Errorf("case %d (%v): %d %s, want 422 invalid-fields", i, c.body, r.status, r.body)
			}
		default:
			byKey[c.key] = append(byKey[c.key], i)
		}
	}
	for key, pair := range byKey {
		a, b := got[pair[0]], got[pair[1]]
		if b.status == http.StatusCreated && b.header.Get("Idempotent-Replayed") == "" {
			a, b = b, a
			pair[0], pair[1] = pair[1], pair[0]
		}
		if a.status != http.StatusCreated || a.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("key %s: %d %s and %d %s, want one 201 that created", key, a.status, a.body, b.status, b.body)
			continue
		}
		ack(pair[0], a)
		switch kind := cases[pair[0]].kind; {
		case b.status == http.StatusConflict && b.problem(t).Type == "/problems/idempotency-key-in-flight":
		case kind == "twin" && b.status == http.StatusCreated && b.header.Get("Idempotent-Replayed") == "true":
			if !bytes.Equal(a.body, b.body) {
				t.Errorf("key %s: replayed %s, first answered %s", key, b.body, a.body)
			}
		case kind == "reused" && b.status == http.StatusUnprocessableEntity && b.problem(t).Type == "/problems/idempotency-key-reused":
		default:
			t.Errorf("key %s (%s): second answer %d %s", key, kind, b.status, b.body)
		}
	}

	// The store: every subscription.created is an acknowledged create, with its metadata.
	ctx := context.Background()
	rows, err := api.db.Query(ctx, `SELECT stream_id::text, metadata->>'actor', metadata->>'correlation_id',
		coalesce(metadata->>'idempotency_key', '') FROM events WHERE type = 'subscription.created'`)
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for rows.Next() {
		var id, actor, correlation, key string
		if err := rows.Scan(&id, &actor, &correlation, &key); err != nil {
			t.Fatal(err)
		}
		stored++
		a, ok := created[id]
		switch {
		case !ok:
			t.Errorf("subscription %s is stored but no request was told it was created", id)
		case actor != api.names[httpapi.ScopeWrite] || correlation != a.correlation || key != a.c.key:
			t.Errorf("subscription %s: metadata actor %q correlation %q key %q, want %q %q %q", id, actor, correlation, key,
				api.names[httpapi.ScopeWrite], a.correlation, a.c.key)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if stored != len(created) {
		t.Errorf("%d subscriptions stored, %d acknowledged", stored, len(created))
	}

	// Invoices: one per acknowledged create without a trial, numbered 1, 2, 3… per customer.
	rows, err = api.db.Query(ctx, `SELECT c.version, c.data, i.data->>'subscription_id'
		FROM events c JOIN events i ON i.type = 'invoice.created' AND i.stream_id = (c.data->>'invoice_id')::uuid
		WHERE c.type = 'customer.invoice_issued' ORDER BY c.stream_id, c.version`)
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int64{}
	invoiced := map[string]int{}
	for rows.Next() {
		var version int64
		var data []byte
		var subID string
		if err := rows.Scan(&version, &data, &subID); err != nil {
			t.Fatal(err)
		}
		var issued domain.InvoiceIssued
		if err := json.Unmarshal(data, &issued); err != nil {
			t.Fatal(err)
		}
		series[issued.CustomerID]++
		if n := series[issued.CustomerID]; issued.Sequence != n || version != n || issued.Number != domain.InvoiceNumber(issued.CustomerID, n) {
			t.Errorf("%s's invoice at version %d: sequence %d, number %s; want %d, %s", issued.CustomerID, version,
				issued.Sequence, issued.Number, n, domain.InvoiceNumber(issued.CustomerID, n))
		}
		if a, ok := created[subID]; !ok || a.c.customer != issued.CustomerID {
			t.Errorf("invoice %s of %s is for %s, not an acknowledged create of that customer", issued.Number, issued.CustomerID, subID)
		}
		invoiced[subID]++
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for id, a := range created {
		if want := map[bool]int{false: 1}[a.c.trial]; invoiced[id] != want {
			t.Errorf("subscription %s (trial %v) has %d first invoices, want %d", id, a.c.trial, invoiced[id], want)
		}
	}
	return len(created)
}

// maxCreatesPerTransaction is the most subscriptions created by one transaction.
func maxCreatesPerTransaction(t *testing.T, api *testAPI) int {
	t.Helper()
	var n int
	if err := api.db.QueryRow(context.Background(), `SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM events
		WHERE type = 'subscription.created' GROUP BY transaction_id) t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// metric reads a sample's value (series as /metrics prints it, labels included), 0 if absent.
func metric(t *testing.T, api *testAPI, series string) int {
	t.Helper()
	r := api.must(http.StatusOK, "GET", "/metrics", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// groupCommit gives batches time to fill, so that concurrent requests surely share them.
func groupCommit(c *httpapi.Config) {
	c.GroupCommit = httpapi.GroupCommit{MaxBatch: 16, Delay: 20 * time.Millisecond, Concurrency: 2}
}

// TestGroupCommitConcurrentCreates: creates sent at once share transactions, and each is
// answered as it would have been alone; repeats of a request are replayed from the records the
// batches wrote. With one batch at a time, every batch commits: the batches after the first
// create for customers who already have invoices. Two at a time may conflict on a customer's
// series; the loser falls back, and its requests still get their answers.
func TestGroupCommitConcurrentCreates(t *testing.T) {
	t.Parallel()
	for _, concurrency := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d at a time", concurrency), func(t *testing.T) {
			t.Parallel()
			var commits atomic.Int64
			api := newTestAPIWith(t, func(c *httpapi.Config) {
				groupCommit(c)
				c.GroupCommit.Concurrency = concurrency
				c.Committed = func() { commits.Add(1) }
			})
			cases := concurrentCreates()
			got := sendAll(api, cases)
			created := checkCreates(t, api, cases, got)
			if n := maxCreatesPerTransaction(t, api); n < 2 {
				t.Errorf("at most %d create per transaction: no batch formed", n)
			}
			if n := metric(t, api, `billing_events_appended_total{type="subscription.created"}`); n != created {
				t.Errorf("metrics count %d subscriptions created, want %d", n, created)
			}
			if n := commits.Load(); n < 1 || n >= int64(created) {
				t.Errorf("Committed called %d times for %d creates in batches", n, created)
			}
			if n := metric(t, api, `billing_group_commit_batches_total{outcome="fell_back"}`); concurrency == 1 && n != 0 {
				t.Errorf("%d batches fell back, though none ran beside another", n)
			}
			for i, c := range cases {
				if c.kind != "create" || c.key == "" {
					continue
				}
				again := api.must(http.StatusCreated, "POST", "/v1/subscriptions", c.body, withHeader("Idempotency-Key", c.key))
				if again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.body, got[i].body) {
					t.Errorf("case %d sent again: %s (replayed %q), first %s", i, again.body, again.header.Get("Idempotent-Replayed"), got[i].body)
				}
			}
		})
	}
}

// TestGroupCommitFallsBack: a batch whose transaction fails, whether before or after its events
// were written, commits nothing, and each of its requests runs alone and gets the answer it
// would have had. A trigger makes every statement that writes rows of more than one create
// fail, as a conflict or a database error in a batch would.
func TestGroupCommitFallsBack(t *testing.T) {
	t.Parallel()
	for _, where := range []failingBatches{
		{"appending the events", "events", "SELECT count(*) FROM new_rows WHERE stream_type = 'subscription'"},
		{"recording the idempotency keys, after the events", "idempotency_keys", "SELECT count(*) FROM new_rows"},
	} {
		t.Run(where.name, func(t *testing.T) {
			t.Parallel()
			// Requests share a batch only if they reach the server within its delay, which a
			// loaded machine (make test under -race, beside other packages) can prevent: a round
			// in which no batch failed proved nothing, and another round runs on a new database.
			// Each round is a subtest, so that its connections close before the next opens.
			const rounds = 3
			failed := false
			for round := 1; !failed; round++ {
				if round > rounds {
					t.Fatalf("no batch failed in %d rounds: the test proved nothing", rounds)
				}
				t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) { failed = where.round(t) })
			}
		})
	}
}

// failingBatches makes statements on table fail where the query rows, over the statement's
// new_rows, counts more than one create.
type failingBatches struct {
	name, table, rows string
}

// round sends concurrent creates to a new API whose failing batches fall back, checks every
// answer and the store, and reports whether any batch failed.
func (where failingBatches) round(t *testing.T) bool {
	t.Helper()
	// One batch at a time: two batches creating for the same customers would conflict on their
	// invoice series, and one that fails so does not reach the trigger.
	api := newTestAPIWith(t, func(c *httpapi.Config) {
		groupCommit(c)
		c.GroupCommit.Concurrency = 1
	})
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE SEQUENCE failed_batches`,
		`CREATE FUNCTION fail_batches() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF (` + where.rows + `) > 1 THEN
				PERFORM nextval('failed_batches');
				RAISE EXCEPTION 'test: this batch fails';
			END IF;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER fail_batches AFTER INSERT ON ` + where.table + ` REFERENCING NEW TABLE AS new_rows
		FOR EACH STATEMENT EXECUTE FUNCTION fail_batches()`,
	} {
		if _, err := api.db.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	cases := concurrentCreates()
	created := checkCreates(t, api, cases, sendAll(api, cases))
	var failed int64
	if err := api.db.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM failed_batches`).Scan(&failed); err != nil {
		t.Fatal(err)
	}
	if n := metric(t, api, `billing_events_appended_total{type="subscription.created"}`); n != created {
		t.Errorf("metrics count %d subscriptions created, want %d (failed batches counted?)", n, created)
	}
	if n := metric(t, api, `billing_group_commit_batches_total{outcome="fell_back"}`); int64(n) != failed {
		t.Errorf("metrics count %d batches fallen back, the trigger failed %d", n, failed)
	}
	if where.table == "events" {
		if n := maxCreatesPerTransaction(t, api); n != 1 {
			t.Errorf("a transaction created %d subscriptions, though every batch failed", n)
		}
	}
	return failed > 0
}
