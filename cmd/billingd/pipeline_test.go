package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

// TestPipelineConvergesAfterRedisLosesEverything drives a real billingd with concurrent
// writers, wipes its Redis keys in the middle of the load (what FLUSHALL or a restart without
// persistence looks like), and checks that the read models still converge to the event store's
// truth with no manual step, and that Redis never holds an event twice.
func TestPipelineConvergesAfterRedisLosesEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	rdb, prefix := testenv.Redis(t)
	addr := freeAddr(t)
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "REDIS_PREFIX": prefix,
		"STREAM_PARTITIONS": "4", "HTTP_ADDR": addr, "LOG_LEVEL": "error", "CONSUMER_NAME": "e2e"}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, func(k string) string { return env[k] }) }()
	defer func() { stop(); <-done }()

	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitReady(t, addr)
	_, key, err := httpapi.CreateAPIKey(ctx, db, "e2e", httpapi.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	client := apiClient{t: t, base: "http://" + addr, key: key}

	const writers, commandsEach = 6, 30
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var ids []string
			for i := range commandsEach {
				if w == 0 && i == commandsEach/2 {
					wipe(t, rdb, prefix)
				}
				if len(ids) == 0 || rng.IntN(4) == 0 {
					var s struct{ ID string }
					status := client.post("/v1/subscriptions", fmt.Sprintf(
						`{"customer_id": "cus_%d_%d", "plan_id": %q, "seats": %d, "trial_days": %d, "payment_method": "pm_card_ok"}`,
						w, i, []string{"starter_monthly", "pro_monthly", "business_yearly"}[rng.IntN(3)],
						1+rng.IntN(5), []int{0, 0, 14}[rng.IntN(3)]), &s)
					if status == http.StatusCreated {
						ids = append(ids, s.ID)
					}
					continue
				}
				id := ids[rng.IntN(len(ids))]
				switch rng.IntN(5) {
				case 0, 1:
					client.post("/v1/subscriptions/"+id+"/seats", fmt.Sprintf(`{"seats": %d}`, 1+rng.IntN(9)), nil)
				case 2:
					client.post("/v1/subscriptions/"+id+"/change-plan", `{"plan_id": "business_monthly"}`, nil)
				case 3:
					client.post("/v1/subscriptions/"+id+"/pause", `{}`, nil)
				case 4:
					client.post("/v1/subscriptions/"+id+"/cancel", `{"at_period_end": false}`, nil)
				}
			}
		}()
	}
	wg.Wait()
	waitForBilling(t, db)

	// The truth: a fold of every stream in the store. (Loaded stream by stream: the global
	// reader may still hold back the newest events while other tests' transactions run.)
	want := map[string]domain.Subscription{}
	rows, err := db.Query(ctx, `SELECT DISTINCT stream_id FROM events WHERE stream_type = 'subscription'`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		s, _, err := eventstore.LoadSubscription(ctx, db, id, eventstore.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[id.String()] = s
	}
	var wantMRR int64
	for _, s := range want {
		if s.Plan.Currency == "USD" {
			wantMRR += s.MRR()
		}
	}

	// The read models converge to it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var summary struct{ MRR int64 }
		client.get("/v1/dashboard/summary?currency=USD", &summary)
		view := client.listAll()
		mismatch := ""
		if summary.MRR != wantMRR {
			mismatch = fmt.Sprintf("dashboard MRR %d, fold %d", summary.MRR, wantMRR)
		}
		if len(view) != len(want) {
			mismatch = fmt.Sprintf("view has %d subscriptions, the store %d", len(view), len(want))
		}
		for id, s := range want {
			v := view[id]
			if v.Version != s.Version || v.Status != string(s.Status) || v.Seats != s.Seats || v.PlanID != s.Plan.PlanID || v.MRR != s.MRR() {
				mismatch = fmt.Sprintf("subscription %s: view %+v, fold v%d %s %d seats %s mrr %d", id, v, s.Version, s.Status, s.Seats, s.Plan.PlanID, s.MRR())
			}
		}
		if mismatch == "" {
			break
		}
		if time.Now().After(deadline) {
			streams := projections.Streams{Prefix: prefix, Partitions: 4}
			for _, p := range projections.Projectors() {
				lag, err := projections.Lag(ctx, db, rdb, streams, p.Name(), time.Now())
				t.Logf("projector %s: %+v %v", p.Name(), lag, err)
			}
			t.Fatalf("read models did not converge: %s", mismatch)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The pipeline's metrics agree that nothing is left to do (acks may trail the commits by a
	// moment, hence the retries).
	wantMetrics := []string{
		"billing_relay_lag_events 0", "billing_relay_leading 1",
		`billing_projector_lag_events{projector="subscriptions"} 0`,
		`billing_projector_pending_entries{projector="subscriptions"} 0`,
		`billing_projector_dead_letters{projector="subscriptions"} 0`,
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(client.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing := ""
		for _, want := range wantMetrics {
			if !strings.Contains(string(metrics), want) {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q", missing)
		}
	}

	// Redis holds no event twice (those published before the wipe are simply gone).
	streams := projections.Streams{Prefix: prefix, Partitions: 4}
	seen := map[string]bool{}
	for p := range streams.Partitions {
		entries, err := rdb.XRange(ctx, streams.Key(p), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, entry := range entries {
			id, _ := entry.Values["event_id"].(string)
			if seen[id] {
				t.Errorf("event %s is in Redis twice", id)
			}
			seen[id] = true
		}
	}
}

// wipe deletes every Redis key of the test: to the service it is a FLUSHALL.
func wipe(t *testing.T, rdb *redis.Client, prefix string) {
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Error(err)
		return
	}
	if len(keys) > 0 {
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			t.Error(err)
		}
	}
}

type apiClient struct {
	t         *testing.T
	base, key string
}

func (c apiClient) do(method, path, body string, out any) int {
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Errorf("%s %s: %v", method, path, err)
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		c.t.Errorf("%s %s: %d", method, path, resp.StatusCode)
	}
	if out != nil && resp.StatusCode < 300 {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (c apiClient) post(path, body string, out any) int { return c.do("POST", path, body, out) }
func (c apiClient) get(path string, out any) int        { return c.do("GET", path, "", out) }

type viewRow struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	PlanID  string `json:"plan_id"`
	Seats   int64  `json:"seats"`
	MRR     int64  `json:"mrr"`
	Version int64  `json:"version"`
}

// listAll pages through GET /v1/subscriptions.
func (c apiClient) listAll() map[string]viewRow {
	out := map[string]viewRow{}
	after := ""
	for {
		var page struct {
			Data              []viewRow `json:"data"`
			HasMore           bool      `json:"has_more"`
			NextStartingAfter string    `json:"next_starting_after"`
		}
		path := "/v1/subscriptions?limit=100"
		if after != "" {
			path += "&starting_after=" + after
		}
		if c.get(path, &page) != http.StatusOK {
			return out
		}
		for _, r := range page.Data {
			out[r.ID] = r
		}
		if !page.HasMore {
			return out
		}
		after = page.NextStartingAfter
	}
}

func waitReady(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("billingd not ready: %v", err)
		}
	}
}

// waitForBilling waits until the billing scheduler has worked through everything due (the first
// invoices' payments, sagas left running): until then the store is still moving.
func waitForBilling(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var due int
		if err := db.QueryRow(context.Background(), `SELECT count(*) FROM billing_schedule WHERE due_at <= now()`).Scan(&due); err != nil {
			t.Fatal(err)
		}
		if due == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d billing jobs still due after 30 s", due)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
