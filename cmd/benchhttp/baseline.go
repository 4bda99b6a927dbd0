package main

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

const bareName = "bare INSERT"

// bareTable has the events table's row shape and indexes and none of the event store's behaviour
// (no expected-version check, no transaction id, no triggers), as in eventstore's BenchmarkAppend:
// what one writer's transaction costs the database when it does the least a command could do.
const bareTable = `CREATE TABLE IF NOT EXISTS bench_bare_events (
	global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	stream_id uuid NOT NULL, stream_type text NOT NULL, version bigint NOT NULL,
	event_id uuid NOT NULL UNIQUE, type text NOT NULL, schema_version integer NOT NULL,
	data jsonb NOT NULL, metadata jsonb NOT NULL, occurred_at timestamptz NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (stream_id, version))`

// bareData is about the size of a subscription.created event's data.
var bareData = json.RawMessage(`{"subscription_id": "0199a0b4-5d6e-7f00-8a1b-2c3d4e5f6a7b", "customer_id": "cus_bench",
	"plan": {"plan_id": "pro_monthly", "name": "Pro", "interval": "month", "unit_amount": 4900, "currency": "USD",
	"features": ["api_access", "email_support", "audit_log", "priority_support"]}, "seats": 2, "status": "active",
	"period_start": "2026-03-14T09:00:00Z", "period_end": "2026-04-14T09:00:00Z", "billing_anchor": "2026-03-14T09:00:00Z",
	"payment_method": "pm_card_ok", "created_at": "2026-03-14T09:00:00Z"}`)

var bareMetadata = json.RawMessage(`{"actor": "bench", "source": "api POST /v1/subscriptions",
	"correlation_id": "0199a0b4-5d6e-7f00-8a1b-2c3d4e5f6a7b", "causation_id": "0199a0b4-5d6e-7f00-8a1b-2c3d4e5f6a7c"}`)

// bareInsert measures single-row INSERTs, each its own transaction (autocommit), from writers
// concurrent connections for d: the rate a transaction per request is bounded by.
func bareInsert(ctx context.Context, dbURL string, writers int, d time.Duration) (result, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return result{}, err
	}
	cfg.MaxConns = int32(writers)
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	defer db.Close()
	if _, err := db.Exec(ctx, bareTable); err != nil {
		return result{}, err
	}
	var rows atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range writers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				_, err := db.Exec(ctx, `INSERT INTO bench_bare_events (stream_id, stream_type, version, event_id, type,
					schema_version, data, metadata, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
					uuid.New(), "subscription", 1, uuid.Must(uuid.NewV7()), "subscription.created", 2,
					bareData, bareMetadata, time.Now())
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				rows.Add(1)
			}
		})
	}
	wg.Wait()
	n := rows.Load()
	return result{name: bareName, workers: writers, requests: int(n),
		throughput: float64(n) / time.Since(start).Seconds()}, firstErr
}
