package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

// TestWorkersSplitAcrossProcesses runs the API and the background workers in separate processes
// (WORKERS=none and WORKERS=relay,projectors,scheduler) on one database and Redis: what the
// API-only process accepts stays unpublished and uncharged until the workers' process starts,
// which then publishes, projects and charges it.
func TestWorkersSplitAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	rdb, prefix := testenv.Redis(t)
	start := func(name, workers string) string {
		addr := freeAddr(t)
		env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "REDIS_PREFIX": prefix,
			"STREAM_PARTITIONS": "1", "HTTP_ADDR": addr, "LOG_LEVEL": "error", "CONSUMER_NAME": name,
			"WORKERS": workers, "BILLING_POLL": "50ms"}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- run(runCtx, func(k string) string { return env[k] }) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("billingd %s: %v", name, err)
			}
		})
		waitReady(t, addr)
		return addr
	}
	api := start("api", "none")
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, key, err := httpapi.CreateAPIKey(ctx, db, "workers", httpapi.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	client := apiClient{t: t, base: "http://" + api, key: key}
	var sub struct{ ID string }
	if status := client.post("/v1/subscriptions",
		`{"customer_id": "cus_split", "plan_id": "pro_monthly", "seats": 2, "trial_days": 0, "payment_method": "pm_card_ok"}`, &sub); status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}

	// No process runs a relay or a scheduler: give a wrongly started one time to show itself.
	time.Sleep(300 * time.Millisecond)
	stream := projections.Streams{Prefix: prefix, Partitions: 1}.Key(0)
	counts := func() (published int64, charges int) {
		n, err := rdb.XLen(ctx, stream).Result()
		if err != nil {
			t.Fatal(err)
		}
		var c int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM sandbox_charges`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return n, c
	}
	if n, c := counts(); n != 0 || c != 0 {
		t.Fatalf("with WORKERS=none only: %d events published, %d charges; want none", n, c)
	}

	start("workers", "relay,projectors,scheduler")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, c := counts()
		row, projected := client.listAll()[sub.ID]
		if n > 0 && c == 1 && projected && row.Status == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the workers started: %d events published, %d charges, projected %v (%+v)", n, c, projected, row)
		}
	}
}
