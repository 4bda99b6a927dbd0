package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/projections"
)

// GET /v1/pipeline/status tells how far the read models trail the event store. It measures
// what GET /metrics exports (relay.Lag and projections.Lag, added up the same way), as JSON a
// browser holding a read key may fetch: the dashboard shows it when the read models are behind.

// Pipeline is what GET /v1/pipeline/status measures: the Redis streams the relay publishes to
// and every projector's consumer group reads.
type Pipeline struct {
	Redis   *redis.Client
	Streams projections.Streams
	// Relay is the relay's checkpoint name; "" means relay.New's default, "relay".
	Relay string
}

type pipelineStatusJSON struct {
	HeadPosition   *int64                `json:"head_position"`
	RelayLagEvents int64                 `json:"relay_lag_events"`
	Projectors     []projectorStatusJSON `json:"projectors"`
}

type projectorStatusJSON struct {
	Name                string  `json:"name"`
	LagEvents           int64   `json:"lag_events"`
	LagSeconds          float64 `json:"lag_seconds"`
	PendingEntries      int64   `json:"pending_entries"`
	DeadLetters         int64   `json:"dead_letters"`
	LastAppliedPosition *int64  `json:"last_applied_position"`
}

// pipelineStatus answers GET /v1/pipeline/status; without a Pipeline (a server built without
// Redis streams, as some tests build it) it answers 503.
func (a *API) pipelineStatus(p *Pipeline) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if prob := parseQuery(r).problem(); prob != nil {
			writeProblem(w, r, prob)
			return
		}
		if p == nil || p.Redis == nil {
			writeProblem(w, r, problem(http.StatusServiceUnavailable, "unavailable", "Service temporarily unavailable",
				"this server does not measure its event pipeline"))
			return
		}
		ctx := r.Context()
		name := p.Relay
		if name == "" {
			name = "relay"
		}
		out := pipelineStatusJSON{Projectors: []projectorStatusJSON{}}
		// The cursor GET /v1/events takes to read only what comes next: the last event in the
		// log's gap-free order (eventstore.ReadAll), not simply the highest position.
		var head int64
		err := a.db.QueryRow(ctx, `SELECT global_position FROM events
			WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
			ORDER BY transaction_id DESC, global_position DESC LIMIT 1`).Scan(&head)
		switch {
		case err == nil:
			out.HeadPosition = &head
		case !errors.Is(err, pgx.ErrNoRows):
			a.fail(w, r, err)
			return
		}
		if out.RelayLagEvents, err = relay.Lag(ctx, a.db, name); err != nil {
			a.fail(w, r, err)
			return
		}
		for _, projector := range projections.Projectors() {
			group := projector.Name()
			// The wall clock, not the service clock: lag is measured against recorded_at.
			lag, err := projections.Lag(ctx, a.db, p.Redis, p.Streams, group, time.Now())
			if err != nil {
				a.fail(w, r, err)
				return
			}
			s := projectorStatusJSON{Name: group, LagEvents: out.RelayLagEvents + lag.Undelivered + lag.Pending,
				LagSeconds: lag.Oldest.Seconds(), PendingEntries: lag.Pending, DeadLetters: lag.DeadLetters}
			if err := a.db.QueryRow(ctx, `SELECT max(global_position) FROM projection_checkpoints WHERE projector = $1`,
				group).Scan(&s.LastAppliedPosition); err != nil {
				a.fail(w, r, err)
				return
			}
			out.Projectors = append(out.Projectors, s)
		}
		writeJSON(w, http.StatusOK, out)
	}
}
