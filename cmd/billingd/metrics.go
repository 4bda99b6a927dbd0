package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/projections"
)

// pipelineCollector measures the event pipeline when Prometheus scrapes: how much the relay has
// not published, and how far each projector's consumer group is behind the store.
type pipelineCollector struct {
	db      *pgxpool.Pool
	rdb     *redis.Client
	streams projections.Streams
	relay   *relay.Relay
	groups  []string
	log     *slog.Logger
}

var (
	relayLagDesc     = prometheus.NewDesc("billing_relay_lag_events", "Committed events not yet published to Redis.", nil, nil)
	relayLeadingDesc = prometheus.NewDesc("billing_relay_leading", "1 if this process is the active relay.", nil, nil)
	lagEventsDesc    = prometheus.NewDesc("billing_projector_lag_events", "Events in the store not yet applied by the projector (unpublished, undelivered or pending).", []string{"projector"}, nil)
	lagSecondsDesc   = prometheus.NewDesc("billing_projector_lag_seconds", "Age of the oldest event published but not yet applied by the projector.", []string{"projector"}, nil)
	pendingDesc      = prometheus.NewDesc("billing_projector_pending_entries", "Entries delivered to the projector's group and not yet acknowledged.", []string{"projector"}, nil)
	deadLettersDesc  = prometheus.NewDesc("billing_projector_dead_letters", "Events the projector gave up on (rows of projection_dead_letters), missing from its read model until redriven.", []string{"projector"}, nil)
)

func (c *pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{relayLagDesc, relayLeadingDesc, lagEventsDesc, lagSecondsDesc, pendingDesc, deadLettersDesc} {
		ch <- d
	}
}

func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	leading := 0.0
	if c.relay.Leading() {
		leading = 1
	}
	ch <- prometheus.MustNewConstMetric(relayLeadingDesc, prometheus.GaugeValue, leading)
	unpublished, err := relay.Lag(ctx, c.db, "relay")
	if err != nil {
		c.log.Warn("metrics: relay lag", "error", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(relayLagDesc, prometheus.GaugeValue, float64(unpublished))
	for _, group := range c.groups {
		lag, err := projections.Lag(ctx, c.db, c.rdb, c.streams, group, time.Now())
		if err != nil {
			c.log.Warn("metrics: projector lag", "projector", group, "error", err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(lagEventsDesc, prometheus.GaugeValue, float64(unpublished+lag.Undelivered+lag.Pending), group)
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, lag.Oldest.Seconds(), group)
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(lag.Pending), group)
		ch <- prometheus.MustNewConstMetric(deadLettersDesc, prometheus.GaugeValue, float64(lag.DeadLetters), group)
	}
}
