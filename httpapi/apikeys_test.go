package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/billing-oss/billing/httpapi"
)

// TestAPIKeyCache: a process remembers a valid key for APIKeyCacheTTL (a revoked key works on
// until then, and no longer), and without a TTL reads the key on every request.
func TestAPIKeyCache(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	for _, c := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", ttl}, {"not cached", 0}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			api := newTestAPIWith(t, func(cfg *httpapi.Config) { cfg.APIKeyCacheTTL = c.ttl })
			api.must(http.StatusUnauthorized, "GET", "/v1/plans", nil, withKey("bk_not_a_key"))
			before := time.Now()
			api.must(http.StatusOK, "GET", "/v1/plans", nil) // remembered until before+ttl at least
			after := time.Now()                              // and after+ttl at most
			if _, err := api.db.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE name = $1`,
				api.names[httpapi.ScopeWrite]); err != nil {
				t.Fatal(err)
			}
			r := api.do("GET", "/v1/plans", nil)
			switch {
			case c.ttl > 0 && time.Since(before) < ttl && r.status != http.StatusOK:
				t.Errorf("right after revocation: %d, want 200 from the cache", r.status)
			case c.ttl == 0 && r.status != http.StatusUnauthorized:
				t.Errorf("right after revocation, without a cache: %d, want 401", r.status)
			}
			time.Sleep(time.Until(after.Add(ttl + 50*time.Millisecond)))
			api.must(http.StatusUnauthorized, "GET", "/v1/plans", nil)
			api.must(http.StatusOK, "GET", "/v1/plans", nil, withKey(api.keys[httpapi.ScopeRead]))
		})
	}
}
