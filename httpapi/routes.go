package httpapi

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/httpapi/ui"
)

// New returns the API's handler: every route it serves is listed here.
func New(cfg Config) http.Handler {
	a := &API{db: cfg.DB, redis: cfg.Redis, catalog: cfg.Catalog, clock: cfg.Clock, testClock: cfg.TestClock, log: cfg.Logger,
		committed: cfg.Committed, metrics: cfg.Metrics, snapshotEvery: cfg.SnapshotEvery, billing: cfg.Billing}
	if a.committed == nil {
		a.committed = func() {}
	}
	if cfg.APIKeyCacheTTL > 0 {
		a.keys = newKeyCache(cfg.APIKeyCacheTTL)
	}
	if cfg.GroupCommit.withDefaults().MaxBatch > 1 {
		a.group = newBatcher(cfg.GroupCommit)
	}
	r := chi.NewRouter()
	r.Use(correlate, a.logRequests)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem(http.StatusNotFound, "route-not-found", "Not found", "no route matches "+r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// A custom 405 handler loses chi's Allow header (RFC 9110 requires it): ask the router.
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, req, problem(http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed",
			req.Method+" is not allowed on "+req.URL.Path+"; allowed: "+strings.Join(allowed, ", ")))
	})

	r.Get("/healthz", healthz)
	r.Get("/readyz", a.readyz)
	r.Get("/openapi.yaml", serveOpenAPI)
	for _, p := range ui.Paths { // the browser dashboard's static files: no key, not API operations
		r.Method(http.MethodGet, p, ui.Handler())
	}
	if a.metrics != nil {
		r.Method("GET", "/metrics", a.metrics.handler())
	}

	r.Route("/v1", func(r chi.Router) {
		r.Use(a.authenticate)
		read, write, admin := r.With(require(ScopeRead)), r.With(require(ScopeWrite)), r.With(require(ScopeAdmin))

		read.Get("/plans", a.listPlans)
		read.Get("/event-types", a.listEventTypes)

		write.Post("/subscriptions", a.createSubscription)
		read.Get("/subscriptions", a.listSubscriptions)
		read.Get("/subscriptions/{id}", a.getSubscriptionView)
		write.Post("/subscriptions/{id}/change-plan", a.changePlan)
		write.Post("/subscriptions/{id}/seats", a.changeSeats)
		write.Post("/subscriptions/{id}/cancel", a.cancel)
		write.Post("/subscriptions/{id}/undo-cancel", a.simpleCommand(domain.UndoCancel{}))
		write.Post("/subscriptions/{id}/pause", a.simpleCommand(domain.Pause{}))
		write.Post("/subscriptions/{id}/resume", a.simpleCommand(domain.Resume{}))
		write.Post("/subscriptions/{id}/payment-method", a.changePaymentMethod)
		read.Get("/subscriptions/{id}/upgrades/{upgrade_id}", a.getUpgrade)

		// The audit trail, read from the event store (audit.go).
		read.Get("/subscriptions/{id}/events", a.listSubscriptionEvents)
		read.Get("/subscriptions/{id}/replay", a.replaySubscription)
		read.Get("/subscriptions/{id}/diff", a.diffSubscription)
		read.Get("/events", a.listEvents)

		read.Get("/dashboard/summary", a.dashboardSummary)
		read.Get("/dashboard/plans", a.dashboardPlans)
		read.Get("/dashboard/mrr", a.dashboardMRR)
		read.Get("/pipeline/status", a.pipelineStatus(cfg.Pipeline))

		// Billing's read side: invoices (invoices.go), customers (customers.go), revenue (revenue.go).
		read.Get("/subscriptions/{id}/invoices", a.listSubscriptionInvoices)
		read.Get("/invoices/{id}", a.getInvoice)
		read.Get("/customers/{customer_id}/entitlements", a.getEntitlements)
		read.Get("/customers/{customer_id}/balance", a.getBalance)
		read.Get("/dashboard/revenue", a.dashboardRevenue)

		if a.testClock != nil {
			read.Get("/test/clock", a.getTestClock)
			admin.Post("/test/clock", a.setTestClock)
		}
	})
	return r
}
