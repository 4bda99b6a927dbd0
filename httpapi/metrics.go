package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the API's Prometheus metrics.
type Metrics struct {
	gatherer prometheus.Gatherer
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	appended *prometheus.CounterVec
	batches  *prometheus.CounterVec
	batched  prometheus.Histogram
}

// NewMetrics registers the API's metrics with reg, which /metrics then serves in full (so other
// components' metrics registered there appear too).
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		gatherer: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billing_http_requests_total", Help: "HTTP requests by method, route pattern and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "billing_http_request_duration_seconds", Help: "HTTP request latency by method and route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route"}),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billing_events_appended_total", Help: "Events appended to the event store by this process, by type.",
		}, []string{"type"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billing_group_commit_batches_total",
			Help: "Group-commit batches by outcome: committed, or fell_back (the transaction failed and each command ran alone).",
		}, []string{"outcome"}),
		batched: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "billing_group_commit_batch_commands", Help: "Commands per group-commit batch.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.appended, m.batches, m.batched)
	return m
}

func (m *Metrics) observe(r *http.Request, status int, elapsed time.Duration) {
	if m == nil {
		return
	}
	route := "unmatched"
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		route = rc.RoutePattern()
	}
	m.requests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
}

func (m *Metrics) eventAppended(eventType string) {
	if m != nil {
		m.appended.WithLabelValues(eventType).Inc()
	}
}

// batch counts a group-commit batch of n commands that committed, or fell back.
func (m *Metrics) batch(n int, committed bool) {
	if m == nil {
		return
	}
	m.batched.Observe(float64(n))
	m.batches.WithLabelValues(map[bool]string{true: "committed", false: "fell_back"}[committed]).Inc()
}

func (m *Metrics) handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}
