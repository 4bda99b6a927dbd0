package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
)

// TestAPIKeyCreatePrintsAWorkingSecretLast: the last line of `apikey create` is a secret the
// API accepts, with the scope asked for.
func TestAPIKeyCreatePrintsAWorkingSecretLast(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return dbURL
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"apikey", "create", "--name", "ops", "--scope", "read"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	secret := lines[len(lines)-1]

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	srv := httptest.NewServer(httpapi.New(httpapi.Config{DB: pool, Catalog: domain.DefaultCatalog(),
		Clock: httpapi.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	for path, want := range map[string]int{"/v1/plans": 200, "/v1/subscriptions": 403} {
		method := "GET"
		if path == "/v1/subscriptions" {
			method = "POST"
		}
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s %s with the new read key: %d, want %d", method, path, resp.StatusCode, want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	getenv := func(string) string { return "postgres://postgres@127.0.0.1:1/none" }
	for _, args := range [][]string{
		{}, {"migrate"}, {"frobnicate", "now"}, {"migrate", "down", "-2"},
		{"apikey", "create", "--scope", "read"}, {"apikey", "create", "--name", "x", "--scope", "root"},
	} {
		if err := run(context.Background(), args, getenv, new(bytes.Buffer)); err == nil {
			t.Errorf("billingctl %v: no error", args)
		}
	}
}

// TestMigrateDownAndUp: the down migrations really revert, so `migrate down` is usable.
func TestMigrateDownAndUp(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	getenv := func(string) string { return dbURL }
	ctx := context.Background()
	for _, args := range [][]string{{"migrate", "down", "2"}, {"migrate", "up"}, {"migrate", "up"}} {
		if err := run(ctx, args, getenv, new(bytes.Buffer)); err != nil {
			t.Fatalf("billingctl %v: %v", args, err)
		}
	}
}
