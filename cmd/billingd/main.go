// Command billingd is the billing service: the HTTP API over the event store.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/billing"
	"github.com/billing-oss/billing/internal/payments"
	"github.com/billing-oss/billing/migrations"
	"github.com/billing-oss/billing/projections"
)

// gcPercent and memoryLimit are the garbage collector's settings unless GOGC or GOMEMLIMIT say
// otherwise. billingd's live heap is small (tens of MB) and it allocates quickly (JSON, rows,
// Redis entries), so Go's default GOGC of 100 collects several times a second: 400 gave 12%
// more saturated creates for about 30 MB more RSS (BENCHMARKS.md). The soft limit makes the
// collector work harder rather than let the heap grow past it.
const (
	gcPercent   = 400
	memoryLimit = 256 << 20
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "billingd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: cfg.LogLevel}))
	log.Info("starting", "config", cfg)

	catalog, err := cfg.catalog()
	if err != nil {
		return err
	}
	if err := migrations.Up(cfg.DatabaseURL); err != nil {
		return err
	}
	poolCfg, err := eventstore.PoolConfig(cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	poolCfg.MaxConns = cfg.DatabaseMaxConns
	db, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer db.Close()
	redisOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(redisOpts)
	defer rdb.Close()

	// Background workers stop when ctx is cancelled; run waits for them before closing the pools.
	var workers sync.WaitGroup
	defer workers.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // runs before the Wait above, also when run fails
	notifier := eventstore.NewNotifier(db, log)
	workers.Go(func() { notifier.Run(ctx) })
	streams := projections.Streams{Prefix: cfg.RedisPrefix, Partitions: cfg.StreamPartitions}
	var groups []string
	for _, p := range projections.Projectors() {
		groups = append(groups, p.Name())
	}
	pipeline := relay.New(relay.Config{DB: db, Redis: rdb, Streams: streams, Groups: groups, Logger: log})
	if cfg.Workers.Relay {
		workers.Go(func() { pipeline.Run(ctx) })
	}

	// A process running projectors runs every projector's consumer; the consumer groups share
	// the work among such processes.
	blocking := redis.NewClient(redisOpts) // blocking reads get their own connections
	defer blocking.Close()
	if cfg.Workers.Projectors {
		for _, p := range projections.Projectors() {
			consumer, err := projections.NewConsumer(projections.ConsumerConfig{
				DB: db, Redis: rdb, Blocking: blocking, Streams: streams, Projector: p,
				ConsumerName: cfg.ConsumerName, Logger: log,
			})
			if err != nil {
				return err
			}
			workers.Go(func() {
				if err := consumer.Run(ctx); err != nil {
					log.Error("consumer stopped", "projector", p.Name(), "error", err)
				}
			})
		}
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&pipelineCollector{db: db, rdb: rdb, streams: streams, relay: pipeline, groups: groups, log: log})
	workers.Go(func() { purgeIdempotencyKeys(ctx, db, log) })
	if cfg.DebugAddr != "" {
		workers.Go(func() { serveDebug(ctx, cfg.DebugAddr, log) })
	}

	api := httpapi.Config{DB: db, Redis: redisPinger{rdb}, Catalog: catalog, Clock: httpapi.SystemClock{}, Logger: log,
		Metrics: httpapi.NewMetrics(registry), SnapshotEvery: cfg.SnapshotEvery, GroupCommit: cfg.GroupCommit,
		APIKeyCacheTTL: cfg.APIKeyCacheTTL}
	api.Pipeline = &httpapi.Pipeline{Redis: rdb, Streams: streams}
	if cfg.TestClock {
		// The clock reads the database on its own pool. Commands and billing steps read it
		// while they hold a connection of the main pool for their transaction: on that pool, a
		// burst of as many commands as it has connections would leave none to read the clock
		// with, and each would wait out the clock's timeout and decide with a stale time.
		clockCfg := poolCfg.Copy()
		clockCfg.MaxConns = 4
		clockDB, err := pgxpool.NewWithConfig(ctx, clockCfg)
		if err != nil {
			return fmt.Errorf("connect to postgres: %w", err)
		}
		defer clockDB.Close()
		clock, err := billing.NewTestClock(ctx, clockDB, time.Now())
		if err != nil {
			return err
		}
		api.Clock, api.TestClock = clock, clock
		log.Warn("BILLING_TEST_CLOCK is on: domain time is frozen and moved only through POST /v1/test/clock")
	}

	// Renewals, payment collection and upgrade sagas; the processes running the scheduler share
	// the work through its leases. Every process drives the paid changes it accepts itself.
	billingService := billing.New(billing.Config{DB: db, Gateway: payments.NewSandbox(db), Clock: api.Clock, Logger: log,
		Dunning: cfg.Dunning, CancelTrialWithoutPaymentMethod: cfg.CancelTrialWithoutPaymentMethod,
		EntitlementsVisible: func(ctx context.Context, id uuid.UUID, version int64) (bool, error) {
			return projections.EntitlementsVisible(ctx, db, id, version)
		},
		Committed: notifier.Notify, Lease: cfg.BillingLease})
	if cfg.Workers.Scheduler {
		workers.Go(func() { billingService.Run(ctx, cfg.BillingPoll) })
	}
	api.Billing = billingService
	api.Committed = func() { notifier.Notify(); billingService.Wake() }
	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           httpapi.New(api),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", cfg.HTTPAddr)
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// purgeIdempotencyKeys deletes idempotency records past their replay window, hourly.
func purgeIdempotencyKeys(ctx context.Context, db *pgxpool.Pool, log *slog.Logger) {
	ticker := time.NewTicker(time.Hour)
	defer ticker.Stop()
	for {
		if n, err := httpapi.PurgeIdempotencyKeys(ctx, db); err != nil && ctx.Err() == nil {
			log.Warn("purge idempotency keys", "error", err)
		} else if n > 0 {
			log.Info("purged expired idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// serveDebug serves the Go profiler on its own listener, off unless DEBUG_ADDR is set: profiles
// are for an operator or a benchmark on the same host, not for the API's clients, and a CPU
// profile costs the process while it runs.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("serving pprof", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("debug server stopped", "error", err)
	}
}

type redisPinger struct{ client *redis.Client }

func (p redisPinger) Ping(ctx context.Context) error { return p.client.Ping(ctx).Err() }
