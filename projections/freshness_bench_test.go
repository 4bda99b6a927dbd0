package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

// timedProjector records, for each event it applies, the time from the event's recording (the
// start of the command's transaction, so slightly before its commit) to the end of the apply.
type timedProjector struct {
	projections.Projector
	mu      sync.Mutex
	samples []time.Duration
}

func (p *timedProjector) Apply(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	if err := p.Projector.Apply(ctx, tx, e); err != nil {
		return err
	}
	p.mu.Lock()
	p.samples = append(p.samples, time.Since(e.RecordedAt))
	p.mu.Unlock()
	return nil
}

// BenchmarkFreshness measures write-to-read freshness through the whole pipeline (HTTP command,
// commit, NOTIFY, relay, Redis Streams, consumer group, read model) at a fixed 500 commands/s.
// It reports the median and 99th percentile in milliseconds; the target is p99 < 100 ms.
func BenchmarkFreshness(b *testing.B) {
	const rate, seconds = 500, 5
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, rdb, blocking, streams := benchPipeline(b)
	quiet := slog.New(slog.DiscardHandler)

	notifier := eventstore.NewNotifier(db, quiet)
	go notifier.Run(ctx)
	go relay.New(relay.Config{DB: db, Redis: rdb, Streams: streams, Logger: quiet}).Run(ctx)
	sub, _ := projections.ProjectorByName("subscriptions")
	timed := &timedProjector{Projector: sub}
	consumer, err := projections.NewConsumer(projections.ConsumerConfig{DB: db, Redis: rdb, Blocking: blocking,
		Streams: streams, Projector: timed, ConsumerName: "bench", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	go consumer.Run(ctx)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{DB: db, Redis: redisPinger{rdb}, Catalog: domain.DefaultCatalog(),
		Clock: httpapi.SystemClock{}, Logger: quiet, Committed: notifier.Notify}))
	defer srv.Close()
	_, key, err := httpapi.CreateAPIKey(ctx, db, "bench", httpapi.ScopeWrite)
	if err != nil {
		b.Fatal(err)
	}

	for b.Loop() {
		timed.mu.Lock()
		timed.samples = nil
		timed.mu.Unlock()
		var wg sync.WaitGroup
		var errs sync.Map
		ticker := time.NewTicker(time.Second / rate)
		for i := range rate * seconds {
			<-ticker.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"customer_id": "cus_%d", "plan_id": "pro_monthly", "seats": 2, "trial_days": 0}`, i)
				req, _ := http.NewRequest("POST", srv.URL+"/v1/subscriptions", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs.Store(i, err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errs.Store(i, resp.Status)
				}
			}()
		}
		ticker.Stop()
		wg.Wait()
		errs.Range(func(k, v any) bool { b.Fatalf("command %v: %v", k, v); return false })
		deadline := time.Now().Add(30 * time.Second)
		for {
			timed.mu.Lock()
			n := len(timed.samples)
			timed.mu.Unlock()
			if n >= rate*seconds {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d events reached the read model", n, rate*seconds)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	timed.mu.Lock()
	samples := slices.Clone(timed.samples)
	timed.mu.Unlock()
	slices.Sort(samples)
	quantile := func(q float64) float64 { return float64(samples[int(q*float64(len(samples)-1))]) / 1e6 }
	b.ReportMetric(quantile(0.5), "p50-ms")
	b.ReportMetric(quantile(0.99), "p99-ms")
	b.ReportMetric(quantile(1), "max-ms")
	b.ReportMetric(0, "ns/op")
}

type redisPinger struct{ client *redis.Client }

func (p redisPinger) Ping(ctx context.Context) error { return p.client.Ping(ctx).Err() }

// benchPipeline is what a pipeline benchmark runs on: a fresh database, a Redis prefix with 8
// partitions, and a second Redis client for the consumers' blocking reads (closed at cleanup).
func benchPipeline(b *testing.B) (*pgxpool.Pool, *redis.Client, *redis.Client, projections.Streams) {
	b.Helper()
	db := testenv.Postgres(b)
	rdb, prefix := testenv.Redis(b)
	opts, err := redis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	blocking := redis.NewClient(opts)
	b.Cleanup(func() { blocking.Close() })
	return db, rdb, blocking, projections.Streams{Prefix: prefix, Partitions: 8}
}
