// Package httpapi is the JSON-over-HTTP entry point: it authenticates callers, turns requests
// into domain commands, runs them against the event store (idempotently, under optimistic
// concurrency) and answers every error as application/problem+json.
package httpapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/billing"
)

// Pinger checks that a dependency answers (Redis, for readiness).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config is what the API needs.
type Config struct {
	DB      *pgxpool.Pool
	Redis   Pinger
	Catalog *domain.Catalog
	Clock   Clock
	// TestClock, when set, enables GET/POST /v1/test/clock. It must also be the Clock.
	TestClock SettableClock
	Logger    *slog.Logger
	// Pipeline, if set, is measured by GET /v1/pipeline/status (otherwise that route answers 503).
	Pipeline *Pipeline
	// Committed, if set, is called after a command's events are committed (to wake the relay).
	Committed func()
	// Metrics, if set, records request and append metrics and enables GET /metrics.
	Metrics *Metrics
	// SnapshotEvery is how many events a command may have to fold before it saves a snapshot of
	// the subscription (see eventstore.LoadSubscriptionWithSnapshot); 0 disables snapshots.
	// billingd defaults it to eventstore.DefaultSnapshotEvery (SNAPSHOT_EVERY).
	SnapshotEvery int
	// APIKeyCacheTTL, if positive, is how long a process remembers a valid API key instead of
	// reading it on every request; a revoked key then works for up to that long.
	APIKeyCacheTTL time.Duration
	// GroupCommit tunes how concurrent creates share a transaction (groupcommit.go).
	GroupCommit GroupCommit
	// Billing drives the upgrade saga of a paid change within its request (invoices and credits
	// inside commands need no Service). Without it, a paid change starts its saga and answers
	// 202, and the saga waits for a process whose scheduler runs it.
	Billing *billing.Service
}

// API serves the HTTP API.
type API struct {
	db        *pgxpool.Pool
	redis     Pinger
	catalog   *domain.Catalog
	clock     Clock
	testClock SettableClock
	log       *slog.Logger
	committed func()
	metrics   *Metrics
	// snapshotEvery is Config.SnapshotEvery.
	snapshotEvery int
	billing       *billing.Service
	// group batches creates (groupcommit.go); nil when group commit is off.
	group *batcher
	// keys caches API keys (apikeys.go); nil without Config.APIKeyCacheTTL.
	keys *keyCache
}
