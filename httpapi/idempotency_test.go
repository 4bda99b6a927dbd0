package httpapi_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/billing-oss/billing/httpapi"
)

func TestIdempotentReplay(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	body := map[string]any{"customer_id": "cus_9", "plan_id": "starter_monthly", "seats": 1}
	key := withHeader("Idempotency-Key", "order-1001")

	first := api.must(http.StatusCreated, "POST", "/v1/subscriptions", body, key)
	again := api.must(http.StatusCreated, "POST", "/v1/subscriptions", body, key)
	if !bytes.Equal(first.body, again.body) {
		t.Errorf("replayed body differs:\nfirst %s\nagain %s", first.body, again.body)
	}
	if first.header.Get("Idempotent-Replayed") != "" || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed: first %q, again %q", first.header.Get("Idempotent-Replayed"), again.header.Get("Idempotent-Replayed"))
	}
	if n := api.eventCount(); n != 1 {
		t.Errorf("%d events after a replayed create, want 1", n)
	}

	// The same key with a different request is refused and changes nothing.
	body["seats"] = 2
	r := api.do("POST", "/v1/subscriptions", body, key)
	if r.status != http.StatusUnprocessableEntity || r.problem(t).Type != "/problems/idempotency-key-reused" {
		t.Errorf("reused key: %d %s", r.status, r.body)
	}
	// Keys belong to the API key that sent them: another caller may use the same string.
	api.must(http.StatusCreated, "POST", "/v1/subscriptions", body, key, withKey(api.keys["admin"]))
	if n := api.eventCount(); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

// TestIdempotentReplayOfRefusal: a command the domain refused is answered the same way on
// replay, even after the state changed so that it would now succeed.
func TestIdempotentReplayOfRefusal(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("starter_monthly", 1)
	path := "/v1/subscriptions/" + s.ID
	key := withHeader("Idempotency-Key", "resume-1")
	first := api.do("POST", path+"/resume", nil, key)
	if first.status != http.StatusConflict {
		t.Fatalf("resume of an active subscription: %d %s", first.status, first.body)
	}
	api.must(http.StatusOK, "POST", path+"/pause", nil)
	again := api.do("POST", path+"/resume", nil, key)
	if again.status != http.StatusConflict || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: %d %s, want the first 409 replayed", again.status, again.body)
	}
	var p1, p2 httpapi.Problem
	first.decode(t, &p1)
	again.decode(t, &p2)
	if p1.Type != p2.Type || p1.Detail != p2.Detail {
		t.Errorf("replayed problem %+v, want %+v", p2, p1)
	}
}

// TestIdempotencyKeyInFlight: while a request holds a key, another with the same key is 409.
func TestIdempotencyKeyInFlight(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	ctx := context.Background()
	var keyID string
	if err := api.db.QueryRow(ctx, `SELECT id FROM api_keys WHERE name = $1`, api.names["write"]).Scan(&keyID); err != nil {
		t.Fatal(err)
	}
	// Hold the key's lock the way an in-flight request does.
	tx, err := api.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2, 0))`, keyID, "busy-key"); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"customer_id": "cus_1", "plan_id": "starter_monthly", "seats": 1}
	r := api.do("POST", "/v1/subscriptions", body, withHeader("Idempotency-Key", "busy-key"))
	if r.status != http.StatusConflict || r.problem(t).Type != "/problems/idempotency-key-in-flight" {
		t.Errorf("in flight: %d %s", r.status, r.body)
	}
	tx.Rollback(ctx)
	api.must(http.StatusCreated, "POST", "/v1/subscriptions", body, withHeader("Idempotency-Key", "busy-key"))
}

// TestIdempotencyUnderConcurrency: many identical requests at once produce exactly one
// subscription; each caller gets either that response or a 409 "in flight".
func TestIdempotencyUnderConcurrency(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	body := map[string]any{"customer_id": "cus_1", "plan_id": "starter_monthly", "seats": 1}
	const callers = 16
	var wg sync.WaitGroup
	results := make([]response, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = api.do("POST", "/v1/subscriptions", body, withHeader("Idempotency-Key", "same"))
		}()
	}
	wg.Wait()
	var created []byte
	for _, r := range results {
		switch r.status {
		case http.StatusCreated:
			if created != nil && !bytes.Equal(created, r.body) {
				t.Errorf("two different 201 bodies:\n%s\n%s", created, r.body)
			}
			created = r.body
		case http.StatusConflict:
		default:
			t.Errorf("status %d: %s", r.status, r.body)
		}
	}
	if created == nil {
		t.Error("no caller got 201")
	}
	if n := api.eventCount(); n != 1 {
		t.Errorf("%d events, want exactly 1", n)
	}
}

func TestIdempotencyKeyValidation(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	body := map[string]any{"customer_id": "cus_1", "plan_id": "starter_monthly", "seats": 1}
	for _, key := range []string{strings.Repeat("k", 256), "tab\tinside", "ünïcode"} {
		r := api.do("POST", "/v1/subscriptions", body, withHeader("Idempotency-Key", key))
		if r.status != http.StatusBadRequest || r.problem(t).Type != "/problems/invalid-idempotency-key" {
			t.Errorf("key %q: %d %s", key, r.status, r.body)
		}
	}
	api.must(http.StatusCreated, "POST", "/v1/subscriptions", body, withHeader("Idempotency-Key", strings.Repeat("k", 255)))
	if n := api.eventCount(); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}
