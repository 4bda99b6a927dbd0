package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
)

// TestRunServesAndShutsDownGracefully starts billingd as main does, waits until it is ready,
// and checks that cancelling its context (SIGTERM) stops it cleanly.
func TestRunServesAndShutsDownGracefully(t *testing.T) {
	t.Parallel()
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	_, prefix := testenv.Redis(t)
	addr := freeAddr(t)
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "REDIS_PREFIX": prefix,
		"HTTP_ADDR": addr, "LOG_LEVEL": "warn"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }) }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("billingd not ready: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("billingd exited early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	resp, err := http.Get("http://" + addr + "/v1/test/clock")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/v1/test/clock without a key: %d, want 401 (route exists only with BILLING_TEST_CLOCK)", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after shutdown, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("billingd did not shut down")
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil || cfg.HTTPAddr != ":8080" || cfg.TestClock || cfg.DatabaseMaxConns != 20 {
		t.Errorf("defaults = %+v, %v", cfg, err)
	}
	for _, v := range []string{"1", "yes", "TRUE"} {
		cfg, _ := loadConfig(func(k string) string {
			if k == "BILLING_TEST_CLOCK" {
				return v
			}
			return ""
		})
		if cfg.TestClock {
			t.Errorf("BILLING_TEST_CLOCK=%q enabled the test clock; only \"true\" may", v)
		}
	}
	if !cfg.Workers.Relay || !cfg.Workers.Projectors || !cfg.Workers.Scheduler {
		t.Errorf("default workers %+v, want all", cfg.Workers)
	}
	for v, want := range map[string]workers{"all": {true, true, true}, "none": {}, "scheduler": {Scheduler: true},
		"relay, projectors": {Relay: true, Projectors: true}} {
		cfg, err := loadConfig(func(k string) string {
			if k == "WORKERS" {
				return v
			}
			return ""
		})
		if err != nil || cfg.Workers != want {
			t.Errorf("WORKERS=%q: %+v, %v; want %+v", v, cfg.Workers, err, want)
		}
	}
	for _, bad := range []string{"api", "relay,", "relay;scheduler"} {
		if _, err := loadConfig(func(k string) string {
			if k == "WORKERS" {
				return bad
			}
			return ""
		}); err == nil {
			t.Errorf("WORKERS=%q accepted", bad)
		}
	}
	if _, err := loadConfig(func(k string) string {
		if k == "DATABASE_MAX_CONNS" {
			return "0"
		}
		return ""
	}); err == nil {
		t.Error("DATABASE_MAX_CONNS=0 accepted")
	}
}

func TestPerformanceConfig(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	cfg, err := loadConfig(env(nil))
	if err != nil || cfg.GroupCommit != httpapi.DefaultGroupCommit {
		t.Errorf("group commit defaults = %+v, %v; want %+v", cfg.GroupCommit, err, httpapi.DefaultGroupCommit)
	}
	cfg, err = loadConfig(env(map[string]string{"GROUP_COMMIT_MAX_BATCH": "1", "GROUP_COMMIT_DELAY": "3ms",
		"GROUP_COMMIT_CONCURRENCY": "4"}))
	if want := (httpapi.GroupCommit{MaxBatch: 1, Delay: 3 * time.Millisecond, Concurrency: 4}); err != nil || cfg.GroupCommit != want {
		t.Errorf("group commit = %+v, %v; want %+v", cfg.GroupCommit, err, want)
	}
	if cfg.APIKeyCacheTTL != 5*time.Second {
		t.Errorf("API key cache TTL %s by default, want 5s", cfg.APIKeyCacheTTL)
	}
	if cfg, err := loadConfig(env(map[string]string{"API_KEY_CACHE_TTL": "0"})); err != nil || cfg.APIKeyCacheTTL != 0 {
		t.Errorf("API_KEY_CACHE_TTL=0: %s, %v; want the cache off", cfg.APIKeyCacheTTL, err)
	}
	for _, bad := range []map[string]string{{"GROUP_COMMIT_MAX_BATCH": "0"}, {"GROUP_COMMIT_CONCURRENCY": "x"},
		{"GROUP_COMMIT_DELAY": "0s"}, {"GROUP_COMMIT_DELAY": "2s"}, {"API_KEY_CACHE_TTL": "-1s"}} {
		if _, err := loadConfig(env(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestBillingConfig(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cfg, err := loadConfig(env())
	if err != nil || cfg.PaymentGateway != "sandbox" || !slices.Equal(cfg.Dunning.RetryDays, []int{1, 3, 5}) ||
		cfg.Dunning.MarkUnpaid || cfg.CancelTrialWithoutPaymentMethod || cfg.BillingPoll != time.Second ||
		cfg.BillingLease != 30*time.Second {
		t.Errorf("billing defaults = %+v, %v", cfg, err)
	}
	cfg, err = loadConfig(env("DUNNING_RETRY_DAYS", "2, 4", "DUNNING_FINAL_ACTION", "unpaid",
		"TRIAL_END_WITHOUT_PAYMENT_METHOD", "cancel", "BILLING_POLL", "250ms", "BILLING_LEASE", "5s"))
	if err != nil || !slices.Equal(cfg.Dunning.RetryDays, []int{2, 4}) || !cfg.Dunning.MarkUnpaid ||
		!cfg.CancelTrialWithoutPaymentMethod || cfg.BillingPoll != 250*time.Millisecond || cfg.BillingLease != 5*time.Second {
		t.Errorf("billing settings = %+v, %v", cfg, err)
	}
	if cfg, err := loadConfig(env("DUNNING_RETRY_DAYS", "none")); err != nil || len(cfg.Dunning.RetryDays) != 0 || cfg.Dunning.RetryDays == nil {
		t.Errorf("DUNNING_RETRY_DAYS=none: %v, %v", cfg.Dunning.RetryDays, err)
	}
	for _, bad := range [][]string{
		{"PAYMENT_GATEWAY", "stripe"}, {"DUNNING_RETRY_DAYS", "3,1"}, {"DUNNING_RETRY_DAYS", "0"},
		{"DUNNING_RETRY_DAYS", "x"}, {"DUNNING_FINAL_ACTION", "delete"}, {"TRIAL_END_WITHOUT_PAYMENT_METHOD", "pause"},
		{"BILLING_POLL", "-1s"}, {"BILLING_LEASE", "0"}, {"BILLING_LEASE", "10ms"},
	} {
		if _, err := loadConfig(env(bad...)); err == nil {
			t.Errorf("%s=%q accepted", bad[0], bad[1])
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestTestClockKeepsUpWithABurst: with the test clock on, a command reads the clock while it
// holds a connection of the pool for its transaction. A burst of more commands than the pool
// has connections must not leave the clock without one (each command would then wait out the
// clock's timeout, seconds, and decide with the last time it had read).
func TestTestClockKeepsUpWithABurst(t *testing.T) {
	t.Parallel()
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	_, prefix := testenv.Redis(t)
	addr := freeAddr(t)
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "REDIS_PREFIX": prefix,
		"HTTP_ADDR": addr, "LOG_LEVEL": "error", "BILLING_TEST_CLOCK": "true", "DATABASE_MAX_CONNS": "3",
		"CONSUMER_NAME": "burst"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }) }()
	defer func() { cancel(); <-done }()
	waitReady(t, addr)
	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, key, err := httpapi.CreateAPIKey(context.Background(), db, "burst", httpapi.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	client := apiClient{t: t, base: "http://" + addr, key: key}

	start := time.Now()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			if status := client.post("/v1/subscriptions", fmt.Sprintf(
				`{"customer_id": "cus_burst_%d", "plan_id": "pro_monthly", "seats": 1, "trial_days": 14}`, i), nil); status != http.StatusCreated {
				t.Errorf("create %d: %d", i, status)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("12 concurrent creates on a pool of 3 took %s: the clock waited for a connection", took)
	}
}
