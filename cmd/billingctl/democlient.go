package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/billing-oss/billing/httpapi"
)

// apiClient calls billingd's public API with one API key. `demo seed` uses nothing else: it
// must build its data the way a customer's integration would, never behind the service's back.
type apiClient struct {
	base    string
	key     string
	http    *http.Client
	timeout time.Duration // per request; a clock move may take longer (see moveClock)
}

func newAPIClient(base, key string) *apiClient {
	return &apiClient{base: strings.TrimRight(base, "/"), key: key, http: &http.Client{}, timeout: 30 * time.Second}
}

// answer is a reply the seed goes on from: a success, or a refusal (4xx) with its problem.
type answer struct {
	status   int
	replayed bool // Idempotent-Replayed: the service answered from its idempotency record
	problem  httpapi.Problem
}

// refused names a refusal the way the tally counts it: "409 period-ended".
func (a answer) refused() string {
	return fmt.Sprintf("%d %s", a.status, strings.TrimPrefix(a.problem.Type, "/problems/"))
}

// fatalAnswerError is an answer the seed cannot go on from: the service failed (5xx), or the
// request can never work (a bad key, a missing route).
type fatalAnswerError struct {
	method, path string
	status       int
	problem      httpapi.Problem
}

func (e *fatalAnswerError) Error() string {
	detail := e.problem.Detail
	if detail == "" {
		detail = http.StatusText(e.status)
	}
	msg := fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, detail)
	if e.problem.CorrelationID != "" {
		msg += " (correlation id " + e.problem.CorrelationID + ")"
	}
	return msg
}

// retryable refusals say "try again", not "no": the same request (and Idempotency-Key) may
// succeed a moment later.
func retryable(p httpapi.Problem) bool {
	return p.Type == "/problems/concurrent-modification" || p.Type == "/problems/idempotency-key-in-flight"
}

// call sends one request and decodes a 2xx body into out (if not nil). 4xx answers come back as
// refusals, except 401 and 403, which no later request could overcome; a 5xx or a network
// error is an error, because a seed that skipped what the service failed to do would go on
// from a history other than the one it reports.
func (c *apiClient) call(ctx context.Context, method, path, idempotencyKey string, body, out any) (answer, error) {
	for attempt := 1; ; attempt++ {
		a, err := c.callOnce(ctx, method, path, idempotencyKey, body, out)
		if err != nil || a.status < 400 || !retryable(a.problem) || attempt == 4 {
			return a, err
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

func (c *apiClient) callOnce(parent context.Context, method, path, idempotencyKey string, body, out any) (answer, error) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reader)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.http.Do(req)
	switch {
	case err != nil && parent.Err() != nil:
		return answer{}, fmt.Errorf("%s %s: %w", method, path, parent.Err()) // interrupted
	case errors.Is(err, context.DeadlineExceeded):
		return answer{}, fmt.Errorf("%s %s: no answer within %s", method, path, c.timeout)
	case err != nil:
		return answer{}, fmt.Errorf("%s %s: %w (is billingd running at %s?)", method, path, err, c.base)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	a := answer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	if resp.StatusCode >= 400 {
		// Not every failure is a problem document (a proxy's 502 page is not); keep what parses.
		_ = json.Unmarshal(raw, &a.problem)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return a, &fatalAnswerError{method: method, path: path, status: resp.StatusCode, problem: a.problem}
		}
		return a, nil
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return a, fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
		}
	}
	return a, nil
}

// get reads a resource; any refusal is an error, since the seed only reads what must exist.
func (c *apiClient) get(ctx context.Context, path string, out any) error {
	a, err := c.call(ctx, http.MethodGet, path, "", nil, out)
	if err == nil && a.status >= 400 {
		err = &fatalAnswerError{method: http.MethodGet, path: path, status: a.status, problem: a.problem}
	}
	return err
}

// The API's JSON, as far as the seed reads it.

type planJSON struct {
	ID         string `json:"id"`
	Interval   string `json:"interval"`
	UnitAmount int64  `json:"unit_amount"`
	Currency   string `json:"currency"`
	TrialDays  int    `json:"trial_days"`
}

type subscriptionJSON struct {
	ID                string     `json:"id"`
	PlanID            string     `json:"plan_id"`
	Status            string     `json:"status"`
	Seats             int64      `json:"seats"`
	PaymentMethod     *string    `json:"payment_method"`
	CurrentPeriodEnd  time.Time  `json:"current_period_end"`
	TrialEnd          *time.Time `json:"trial_end"`
	CancelAtPeriodEnd bool       `json:"cancel_at_period_end"`
	ScheduledChange   *struct {
		PlanID      string    `json:"plan_id"`
		EffectiveAt time.Time `json:"effective_at"`
	} `json:"scheduled_change"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
}

// changeJSON is the answer of change-plan and seats: the subscription after the change.
type changeJSON struct {
	Subscription subscriptionJSON `json:"subscription"`
}

type clockJSON struct {
	Now       time.Time `json:"now"`
	Processed int       `json:"processed"`
}

type summaryJSON struct {
	MRR      int64 `json:"mrr"`
	Active   int   `json:"active_subscriptions"`
	Trialing int   `json:"trialing_subscriptions"`
	PastDue  int   `json:"past_due_subscriptions"`
	Paused   int   `json:"paused_subscriptions"`
	Canceled int   `json:"canceled_subscriptions"`
}

func (s summaryJSON) subscriptions() int {
	return s.Active + s.Trialing + s.PastDue + s.Paused + s.Canceled
}

type eventPageJSON struct {
	Data []struct {
		Type string `json:"type"`
		Data struct {
			Reason    string `json:"reason"`    // subscription.canceled
			Direction string `json:"direction"` // subscription.plan_changed
		} `json:"data"`
	} `json:"data"`
	HasMore           bool  `json:"has_more"`
	NextAfterPosition int64 `json:"next_after_position"`
}

// clock reads the test clock; a service without one answers 404 route-not-found.
func (c *apiClient) clock(ctx context.Context) (time.Time, error) {
	var clock clockJSON
	a, err := c.call(ctx, http.MethodGet, "/v1/test/clock", "", nil, &clock)
	switch {
	case err != nil:
		return time.Time{}, err
	case a.status == http.StatusNotFound:
		return time.Time{}, errors.New("the service at " + c.base + " has no test clock: start billingd with BILLING_TEST_CLOCK=true " +
			"(e.g. BILLING_TEST_CLOCK=true make run); demo seed never moves a real clock")
	case a.status >= 400:
		return time.Time{}, &fatalAnswerError{method: http.MethodGet, path: "/v1/test/clock", status: a.status, problem: a.problem}
	}
	return clock.Now, nil
}

// moveClock moves the test clock to at; the service answers once it has worked through the
// renewals, payments and upgrade steps that came due, and says how many.
func (c *apiClient) moveClock(ctx context.Context, at time.Time) (int, error) {
	long := *c
	long.timeout = 5 * time.Minute // a large deployment can have a lot come due in one move
	var clock clockJSON
	a, err := long.call(ctx, http.MethodPost, "/v1/test/clock", "", map[string]time.Time{"now": at}, &clock)
	if err == nil && a.status >= 400 {
		err = &fatalAnswerError{method: http.MethodPost, path: "/v1/test/clock", status: a.status, problem: a.problem}
	}
	return clock.Processed, err
}

// projectorLag reads from billingd's Prometheus metrics how many events its projectors have not
// applied yet, summed over projectors; ok is false when the service publishes no such figure.
func (c *apiClient) projectorLag(ctx context.Context) (lag float64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, false, fmt.Errorf("GET /metrics: %w", err)
	}
	lag, ok = parseProjectorLag(string(raw))
	return lag, ok, nil
}

// parseProjectorLag sums the billing_projector_lag_events samples of a Prometheus text
// exposition.
func parseProjectorLag(metrics string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, "billing_projector_lag_events{") && !strings.HasPrefix(line, "billing_projector_lag_events ") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}
