package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

type pipelineStatus struct {
	HeadPosition   *int64 `json:"head_position"`
	RelayLagEvents int64  `json:"relay_lag_events"`
	Projectors     []struct {
		Name                string  `json:"name"`
		LagEvents           int64   `json:"lag_events"`
		LagSeconds          float64 `json:"lag_seconds"`
		PendingEntries      int64   `json:"pending_entries"`
		DeadLetters         int64   `json:"dead_letters"`
		LastAppliedPosition *int64  `json:"last_applied_position"`
	} `json:"projectors"`
}

// TestPipelineStatus follows GET /v1/pipeline/status through each stage an event goes through:
// committed but not published (relay lag), published but not delivered to the projector's
// group, and applied (no lag, the projector's checkpoint at the head of the log).
func TestPipelineStatus(t *testing.T) {
	t.Parallel()
	api, rdb, streams := newPipelineTestAPI(t)
	read := withKey(api.keys[httpapi.ScopeRead])
	status := func() pipelineStatus {
		t.Helper()
		var s pipelineStatus
		api.must(http.StatusOK, "GET", "/v1/pipeline/status", nil, read).decode(t, &s)
		if len(s.Projectors) != len(projections.Projectors()) || s.Projectors[0].Name != "subscriptions" {
			t.Fatalf("projectors = %+v, want one per projections.Projectors(), subscriptions first", s.Projectors)
		}
		return s
	}
	blocking, _ := testenv.Redis(t) // blocking reads need a client of their own
	consumer := func() (stop func()) {
		c, err := projections.NewConsumer(projections.ConsumerConfig{DB: api.db, Redis: rdb, Blocking: blocking,
			Streams: streams, Projector: projections.NewSubscriptions(), ConsumerName: "status-test",
			Block: time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer: %v", err)
			}
		}
	}
	eventually := func(what string, ok func(pipelineStatus) bool) pipelineStatus {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := status()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %+v", what, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	s := status()
	if s.HeadPosition != nil || s.RelayLagEvents != 0 || s.Projectors[0].LagEvents != 0 || s.Projectors[0].LastAppliedPosition != nil {
		t.Errorf("empty log: %+v, want no head, no lag, nothing applied", s)
	}

	// The consumer creates its group on every partition, then stops: what it is not delivered
	// from now on is undelivered lag.
	stop := consumer()
	for p := range streams.Partitions {
		for {
			groups, _ := rdb.XInfoGroups(context.Background(), streams.Key(p)).Result()
			if len(groups) == 1 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop()

	for range 3 {
		api.create("pro_monthly", 2)
	}
	events := testenv.WholeLog(t, api.db)
	n := int64(len(events))
	head := events[n-1].Position.GlobalPosition
	s = status()
	if s.HeadPosition == nil || *s.HeadPosition != head {
		t.Errorf("head_position = %v, want %d (the last event of the log)", s.HeadPosition, head)
	}
	if p := s.Projectors[0]; s.RelayLagEvents != n || p.LagEvents != n || p.LastAppliedPosition != nil {
		t.Errorf("nothing published: relay lag %d, projector %+v; want both lags %d, nothing applied", s.RelayLagEvents, p, n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := relay.New(relay.Config{DB: api.db, Redis: rdb, Streams: streams, Logger: slog.New(slog.DiscardHandler)})
	go r.Run(ctx)
	s = eventually("relay publishes", func(s pipelineStatus) bool { return s.RelayLagEvents == 0 })
	if p := s.Projectors[0]; p.LagEvents != n || p.PendingEntries != 0 || p.LagSeconds <= 0 || p.LastAppliedPosition != nil {
		t.Errorf("published, not delivered: %+v; want lag %d, none pending, a positive age, nothing applied", p, n)
	}

	defer consumer()()
	s = eventually("projector applies", func(s pipelineStatus) bool { return s.Projectors[0].LagEvents == 0 })
	if p := s.Projectors[0]; p.LagSeconds != 0 || p.PendingEntries != 0 || p.DeadLetters != 0 ||
		p.LastAppliedPosition == nil || *p.LastAppliedPosition != head {
		t.Errorf("applied: %+v; want no age, nothing pending or dead, last applied %d", p, head)
	}

	api.must(http.StatusBadRequest, "GET", "/v1/pipeline/status?verbose=true", nil, read)
}

// newPipelineTestAPI is newTestAPI with a Pipeline over its own Redis prefix and 2 partitions.
func newPipelineTestAPI(t *testing.T) (*testAPI, *redis.Client, projections.Streams) {
	t.Helper()
	db := testenv.Postgres(t)
	rdb, prefix := testenv.Redis(t)
	streams := projections.Streams{Prefix: prefix, Partitions: 2}
	clock := httpapi.NewTestClock(testStart)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{
		DB: db, Redis: redisPinger{rdb}, Catalog: domain.DefaultCatalog(),
		Clock: clock, TestClock: clock, Logger: slog.New(slog.DiscardHandler),
		Pipeline: &httpapi.Pipeline{Redis: rdb, Streams: streams},
	}))
	t.Cleanup(srv.Close)
	api := &testAPI{t: t, db: db, url: srv.URL, clock: clock, keys: map[httpapi.Scope]string{}, names: map[httpapi.Scope]string{}}
	for _, scope := range []httpapi.Scope{httpapi.ScopeRead, httpapi.ScopeWrite} {
		key, secret, err := httpapi.CreateAPIKey(context.Background(), db, "test-"+string(scope), scope)
		if err != nil {
			t.Fatal(err)
		}
		api.keys[scope], api.names[scope] = secret, key.Name
	}
	return api, rdb, streams
}

// TestPipelineStatusUnconfigured: a server built without a Pipeline says so rather than
// reporting no lag.
func TestPipelineStatusUnconfigured(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	p := api.must(http.StatusServiceUnavailable, "GET", "/v1/pipeline/status", nil, withKey(api.keys[httpapi.ScopeRead])).problem(t)
	if p.Type != "/problems/unavailable" {
		t.Errorf("type %q, want /problems/unavailable", p.Type)
	}
}
