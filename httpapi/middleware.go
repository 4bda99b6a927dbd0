package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
)

type correlationContextKey struct{}
type requestIDContextKey struct{}
type requestInfoContextKey struct{}

// requestInfo collects what inner handlers learn about a request (who sent it) for the log line
// the outermost middleware writes.
type requestInfo struct{ actor string }

func setActor(ctx context.Context, actor string) {
	if info, ok := ctx.Value(requestInfoContextKey{}).(*requestInfo); ok {
		info.actor = actor
	}
}

// correlationPattern bounds what a client may send as a correlation id: it ends up in logs and
// in every event's metadata.
var correlationPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// correlate accepts the caller's X-Correlation-ID (or makes one), returns it, and gives every
// request its own id, recorded as the causation id of the events it appends.
func correlate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		corr := r.Header.Get("X-Correlation-ID")
		if !correlationPattern.MatchString(corr) {
			corr = uuid.NewString()
		}
		reqID := uuid.Must(uuid.NewV7()).String()
		w.Header().Set("X-Correlation-ID", corr)
		w.Header().Set("X-Request-ID", reqID)
		ctx := context.WithValue(r.Context(), correlationContextKey{}, corr)
		ctx = context.WithValue(ctx, requestIDContextKey{}, reqID)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func correlationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationContextKey{}).(string)
	return id
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDContextKey{}).(string)
	return id
}

// logRequests writes one structured line per request, and turns a panic into a 500 problem
// (logged with its stack by the recoverer, never shown to the client).
func (a *API) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoContextKey{}, info))
		defer func() {
			if rec := recover(); rec != nil {
				a.log.ErrorContext(r.Context(), "panic serving request", "panic", rec,
					"correlation_id", correlationID(r.Context()), "stack", string(debug.Stack()))
				if ww.Status() == 0 {
					writeProblem(ww, r, internalError())
				}
			}
			a.metrics.observe(r, ww.Status(), time.Since(start))
			level := slog.LevelInfo
			if ww.Status() >= 500 {
				level = slog.LevelError
			}
			a.log.LogAttrs(r.Context(), level, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", ww.Status()), slog.Duration("duration", time.Since(start)),
				slog.String("correlation_id", correlationID(r.Context())),
				slog.String("request_id", requestID(r.Context())),
				slog.String("actor", info.actor))
		}()
		next.ServeHTTP(ww, r)
	})
}

func internalError() *Problem {
	return problem(http.StatusInternalServerError, "internal", "Internal error",
		"the server failed to handle this request; it has been logged under the correlation id")
}

// fail answers an error: a known one with its problem, anything else as a logged 500 that
// leaks nothing about the server.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err)
	if p == nil {
		a.log.ErrorContext(r.Context(), "request failed", "error", err, "correlation_id", correlationID(r.Context()))
		p = internalError()
	} else if p.Status >= 500 {
		a.log.WarnContext(r.Context(), "dependency unavailable", "error", err, "correlation_id", correlationID(r.Context()))
	}
	writeProblem(w, r, p)
}
