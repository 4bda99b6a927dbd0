package httpapi

import (
	"context"
	"net/http"
	"time"
)

// healthz says the process is up; it checks nothing else, so an orchestrator does not restart
// a healthy process because a dependency is down.
func healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether this process can serve: Postgres and Redis both answer.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"postgres": "ok", "redis": "ok"}
	ready := true
	if err := a.db.Ping(ctx); err != nil {
		checks["postgres"], ready = "unreachable", false
	}
	if err := a.redis.Ping(ctx); err != nil {
		checks["redis"], ready = "unreachable", false
	}
	if !ready {
		p := problem(http.StatusServiceUnavailable, "not-ready", "Not ready", "a dependency is unreachable")
		for name, state := range checks {
			if state != "ok" {
				p.Errors = append(p.Errors, FieldError{Pointer: name, Detail: state})
			}
		}
		writeProblem(w, r, p)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}
