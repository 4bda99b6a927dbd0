package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/billing-oss/billing/internal/scratch"
)

// LoadConfig says what a Load sends and where.
type LoadConfig struct {
	URLs    []string // the processes, used round-robin; a retry goes to the next one
	APIKey  string   // needs the admin scope (the test clock)
	Workers int      // concurrent clients (default 8)
	// ClockEvery is how often the test clock moves forward by 1-7 days (default 1s; negative:
	// never), so that renewals, collection and dunning run under the load too.
	ClockEvery time.Duration
	Seed       uint64        // of the workload's choices (default: random)
	Timeout    time.Duration // per request (default 20s: a paid change may take 10s before 202)
}

// Answer is one answer that was not a success (or a transport error, Status 0), kept with
// when and from where it came so that a scenario can look at the answers of a fault's window.
type Answer struct {
	At          time.Time
	URL         string // the process's base URL
	Method      string
	Path        string
	Key         string
	Status      int // 0: no HTTP answer (Err says why)
	ContentType string
	Body        string // the first 500 bytes
	Err         string
	Timeout     bool // no answer in time
}

func (a Answer) String() string {
	if a.Status == 0 {
		return fmt.Sprintf("%s %s %s%s: %s", a.At.Format("15:04:05.000"), a.Method, a.URL, a.Path, a.Err)
	}
	return fmt.Sprintf("%s %s %s%s: %d %s %s", a.At.Format("15:04:05.000"), a.Method, a.URL, a.Path, a.Status,
		a.ContentType, strings.TrimSpace(a.Body))
}

// Stats counts what the load saw.
type Stats struct {
	Operations      int            // idempotency keys (and clock moves) started
	Requests        int            // HTTP requests sent, retries included
	Retries         int            // requests sent again with the same key (or clock time)
	Acked           int            // keys answered 2xx or 402: len(Acks())
	Unresolved      int            // keys still without a definitive answer when the load stopped
	TransportErrors int            // requests with no HTTP answer (refused, reset, timed out)
	Timeouts        int            // of which timed out
	InFlight409     int            // 409 idempotency-key-in-flight: retried, the first attempt still held the key
	Final           map[int]int    // definitive answers by status (4xx: refusals; 409s are expected under concurrency)
	Refusals        map[string]int // definitive 4xx by status and problem type, e.g. "409 invalid-transition"
	Unavailable     int            // 503s (retried)
	// 503s whose body is not application/problem+json: each is a violation.
	UnavailableNotProblem []Answer
	// Every 5xx other than 503: each is a violation.
	ServerErrors []Answer
	Samples503   []Answer // the first few 503s
	ClockMoves   int      // test clock moves answered 200
	// Clock moves answered anything else: the mover reads the clock and moves it forward, and
	// nothing else moves it meanwhile, so each is a violation.
	ClockRefused []Answer
	Creates      int // subscriptions created (201)
}

// Load is the mixed workload: Workers clients create subscriptions and change them (paid
// upgrades of plan and seats, seat decreases, downgrades, cancellations now and at the period
// end, payment-method changes) on a shared pool, each request with an Idempotency-Key of its
// own, retried with the same key on a transport error, 502, 503, timeout or key in flight
// until it gets a definitive answer; and the test clock moves forward every ClockEvery.
type Load struct {
	cfg      LoadConfig
	client   *http.Client
	tag      string
	next     atomic.Uint64 // round-robin over the processes
	stopping chan struct{} // closed by Stop: no new operations
	hard     context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu      sync.Mutex
	acks    map[string]Ack
	stats   Stats
	answers []Answer
	subs    []*sub
}

// sub is what the load believes of one subscription: enough to choose a change that may be
// allowed. It may be stale (renewals, dunning, other workers); the service refuses then.
type sub struct {
	id     string
	plan   string
	seats  int
	status string
}

// The monthly USD plans, cheapest first: up and down moves stay in one currency.
var planLadder = []string{"starter_monthly", "pro_monthly", "business_monthly"}

const maxAnswers = 50000

// StartLoad starts the workers and the clock mover.
func StartLoad(cfg LoadConfig) *Load {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.ClockEvery == 0 {
		cfg.ClockEvery = time.Second
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	hard, cancel := context.WithCancel(context.Background())
	l := &Load{cfg: cfg, tag: scratch.Tag(), stopping: make(chan struct{}), hard: hard, cancel: cancel,
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers + 2}},
		acks:   map[string]Ack{}, stats: Stats{Final: map[int]int{}, Refusals: map[string]int{}}}
	for w := range cfg.Workers {
		l.wg.Go(func() { l.work(w, rand.New(rand.NewPCG(cfg.Seed, uint64(w)))) })
	}
	if cfg.ClockEvery > 0 {
		l.wg.Go(func() { l.moveClock(rand.New(rand.NewPCG(cfg.Seed, 1<<32))) })
	}
	return l
}

// Stop starts no new operation, lets those under way get their definitive answer for up to
// drain, then abandons the rest (counted as Unresolved).
func (l *Load) Stop(drain time.Duration) {
	select {
	case <-l.stopping:
		return
	default:
	}
	close(l.stopping)
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drain):
		l.cancel()
		<-done
	}
	l.cancel()
	l.client.CloseIdleConnections()
}

// Acks is one Ack per key answered 2xx or 402, in the order the answers arrived.
func (l *Load) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	acks := make([]Ack, 0, len(l.acks))
	for _, a := range l.acks {
		acks = append(acks, a)
	}
	slices.SortFunc(acks, func(a, b Ack) int { return a.At.Compare(b.At) })
	return acks
}

// Stats is a copy of the counts so far.
func (l *Load) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Acked = len(l.acks)
	s.Final, s.Refusals = maps.Clone(l.stats.Final), maps.Clone(l.stats.Refusals)
	s.UnavailableNotProblem = slices.Clone(s.UnavailableNotProblem)
	s.ServerErrors = slices.Clone(s.ServerErrors)
	s.Samples503 = slices.Clone(s.Samples503)
	s.ClockRefused = slices.Clone(s.ClockRefused)
	return s
}

// Answers are the answers that were not successes (and the transport errors), in order.
func (l *Load) Answers() []Answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.answers)
}

// Probe sends one create to the process at base, once (no retry, no other process): the
// scenarios use it to tell when that very process serves again. A 2xx is an Ack like any other.
func (l *Load) Probe(ctx context.Context, base string) (Answer, error) {
	key := fmt.Sprintf("chaos-%s-probe-%d", l.tag, l.next.Add(1))
	body := mustJSON(map[string]any{"customer_id": "cus_" + l.tag + "_probe", "plan_id": "starter_monthly",
		"seats": 1, "trial_days": 0, "payment_method": "pm_card_ok"})
	l.count(func(s *Stats) { s.Operations++ })
	a, resp, err := l.sendOnce(ctx, base, http.MethodPost, "/v1/subscriptions", key, body)
	if err != nil {
		return a, err
	}
	l.settled(a, body, resp)
	return a, nil
}

// work is one client: operations one after another until Stop.
func (l *Load) work(w int, rng *rand.Rand) {
	for n := 0; ; n++ {
		select {
		case <-l.stopping:
			return
		default:
		}
		key := fmt.Sprintf("chaos-%s-w%d-%d", l.tag, w, n)
		method, path, body := l.choose(rng, key)
		l.count(func(s *Stats) { s.Operations++ })
		l.send(key, method, path, body)
		// A short, random pause: the workers do not march in step.
		time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
	}
}

// choose picks the next operation: a create while the pool is small, else a change to a
// random subscription of the pool.
func (l *Load) choose(rng *rand.Rand, key string) (method, path string, body []byte) {
	l.mu.Lock()
	var s sub
	if len(l.subs) > 0 {
		s = *l.subs[rng.IntN(len(l.subs))]
	}
	poolSize := len(l.subs)
	l.mu.Unlock()

	k := rng.IntN(100)
	if poolSize < 10 || k < 18 {
		pm := "pm_card_ok"
		if rng.IntN(100) < 15 {
			pm = "pm_card_declined"
		}
		// Twenty customers: their subscriptions share an invoice series and a credit balance.
		req := map[string]any{"customer_id": fmt.Sprintf("cus_%s_%d", l.tag, rng.IntN(20)),
			"plan_id": planLadder[rng.IntN(2)], "seats": 1 + rng.IntN(4), "payment_method": pm}
		if rng.IntN(100) < 80 {
			req["trial_days"] = 0 // paid from now: invoices and charges at once
		}
		return http.MethodPost, "/v1/subscriptions", mustJSON(req)
	}
	base := "/v1/subscriptions/" + s.id
	rung := slices.Index(planLadder, s.plan)
	switch {
	case k < 36: // paid upgrade: more seats
		return http.MethodPost, base + "/seats", mustJSON(map[string]any{"seats": s.seats + 1 + rng.IntN(3)})
	case k < 52: // paid upgrade: a dearer plan (or more seats at the top)
		if rung >= 0 && rung < len(planLadder)-1 {
			return http.MethodPost, base + "/change-plan", mustJSON(map[string]any{"plan_id": planLadder[rung+1]})
		}
		return http.MethodPost, base + "/change-plan", mustJSON(map[string]any{"plan_id": s.plan, "seats": s.seats + 1})
	case k < 62: // fewer seats: a credit now
		return http.MethodPost, base + "/seats", mustJSON(map[string]any{"seats": max(1, s.seats-1-rng.IntN(2))})
	case k < 72: // downgrade: at the period end by default, sometimes now (a credit)
		plan := planLadder[0]
		if rung > 0 {
			plan = planLadder[rung-1]
		}
		req := map[string]any{"plan_id": plan}
		if rng.IntN(3) == 0 {
			req["timing"] = "immediate"
		}
		return http.MethodPost, base + "/change-plan", mustJSON(req)
	case k < 80:
		return http.MethodPost, base + "/cancel", mustJSON(map[string]any{"at_period_end": true})
	case k < 83:
		return http.MethodPost, base + "/cancel", mustJSON(map[string]any{})
	case k < 86:
		return http.MethodPost, base + "/undo-cancel", []byte("{}")
	default: // a card that works, or one that does not (dunning at the next charge)
		pm := "pm_card_ok"
		if rng.IntN(4) == 0 {
			pm = "pm_card_declined"
		}
		return http.MethodPost, base + "/payment-method", mustJSON(map[string]any{"payment_method": pm})
	}
}

// retryAfter counts a retry and waits d before it. It reports false, counting the operation
// unresolved, if the load is stopped hard meanwhile.
func (l *Load) retryAfter(d time.Duration) bool {
	l.count(func(s *Stats) { s.Retries++ })
	select {
	case <-l.hard.Done():
		l.count(func(s *Stats) { s.Unresolved++ })
		return false
	case <-time.After(d):
		return true
	}
}

// send sends one keyed request until it gets a definitive answer: a transport error, a
// timeout, a 502, a 503 or a 409 idempotency-key-in-flight is sent again, with the same key,
// to the next process, after a backoff. It gives up only when the load is stopped hard.
func (l *Load) send(key, method, path string, body []byte) {
	backoff := 25 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if !l.retryAfter(backoff/2 + time.Duration(rand.Int64N(int64(backoff)))) {
				return
			}
			backoff = min(2*backoff, time.Second)
		}
		if l.hard.Err() != nil {
			l.count(func(s *Stats) { s.Unresolved++ })
			return
		}
		a, resp, err := l.sendOnce(l.hard, l.pick(), method, path, key, body)
		if err != nil || retryable(a) {
			continue
		}
		l.settled(a, body, resp)
		return
	}
}

// retryable: the answer says nothing about the key's outcome, so the same request is sent again.
func retryable(a Answer) bool {
	switch a.Status {
	case 0, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusConflict:
		return strings.Contains(a.Body, "idempotency-key-in-flight")
	}
	return false
}

// sendOnce sends one request and records its answer. err is set only when the request could
// not be made at all, or the load was stopped hard.
func (l *Load) sendOnce(ctx context.Context, base, method, path, key string, body []byte) (Answer, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return Answer{}, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+l.cfg.APIKey)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	a := Answer{URL: base, Method: method, Path: path, Key: key}
	resp, err := l.client.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		a.Status, a.ContentType = resp.StatusCode, resp.Header.Get("Content-Type")
		a.Body = string(data[:min(len(data), 500)])
	}
	a.At = time.Now()
	if err != nil {
		if ctx.Err() != nil && l.hard.Err() != nil {
			return a, nil, err // stopped: not the service's doing
		}
		var ne net.Error
		a.Status, a.Err = 0, err.Error()
		a.Timeout = errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	}
	l.record(a)
	return a, data, nil
}

// record counts one answer, and keeps it if it is not a success.
func (l *Load) record(a Answer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.stats
	s.Requests++
	switch {
	case a.Status == 0:
		s.TransportErrors++
		if a.Timeout {
			s.Timeouts++
		}
	case a.Status == http.StatusServiceUnavailable:
		s.Unavailable++
		if !strings.HasPrefix(a.ContentType, "application/problem+json") {
			s.UnavailableNotProblem = append(s.UnavailableNotProblem, a)
		}
		if len(s.Samples503) < 5 {
			s.Samples503 = append(s.Samples503, a)
		}
	case a.Status >= 500:
		s.ServerErrors = append(s.ServerErrors, a)
	case a.Status == http.StatusConflict && strings.Contains(a.Body, "idempotency-key-in-flight"):
		s.InFlight409++
	}
	if (a.Status < 200 || a.Status > 299) && len(l.answers) < maxAnswers {
		l.answers = append(l.answers, a)
	}
}

// settled takes a definitive answer: counted by status, an Ack if 2xx or 402, and what it
// says of the subscription goes into the pool.
func (l *Load) settled(a Answer, body, resp []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Final[a.Status]++
	if a.Status >= 400 && a.Status <= 499 && a.Status != http.StatusPaymentRequired {
		var p struct {
			Type string `json:"type"`
		}
		json.Unmarshal(resp, &p)
		slug := strings.TrimPrefix(p.Type, "/problems/")
		l.stats.Refusals[fmt.Sprintf("%d %s", a.Status, slug)]++
		if slug == "subscription-canceled" {
			// Canceled by a renewal or by dunning: nothing more to do with it.
			l.subs = slices.DeleteFunc(l.subs, func(s *sub) bool {
				return strings.HasPrefix(a.Path, "/v1/subscriptions/"+s.id+"/")
			})
		}
	}
	if !(a.Status >= 200 && a.Status <= 299 || a.Status == http.StatusPaymentRequired) {
		return
	}
	l.acks[a.Key] = Ack{Key: a.Key, Method: a.Method, Path: a.Path, Body: json.RawMessage(body), Status: a.Status,
		Answer: json.RawMessage(resp), At: a.At}
	if a.Status == http.StatusCreated && a.Path == "/v1/subscriptions" {
		l.stats.Creates++
	}
	var view struct {
		ID             string `json:"id"`
		SubscriptionID string `json:"subscription_id"` // set in an upgrade saga (202), whose id is the saga's
		PlanID         string `json:"plan_id"`
		Seats          int    `json:"seats"`
		Status         string `json:"status"`
		Subscription   *struct {
			ID     string `json:"id"`
			PlanID string `json:"plan_id"`
			Seats  int    `json:"seats"`
			Status string `json:"status"`
		} `json:"subscription"`
	}
	if json.Unmarshal(resp, &view) != nil || view.SubscriptionID != "" {
		return
	}
	if v := view.Subscription; v != nil {
		view.ID, view.PlanID, view.Seats, view.Status = v.ID, v.PlanID, v.Seats, v.Status
	}
	if view.ID == "" || view.PlanID == "" {
		return
	}
	i := slices.IndexFunc(l.subs, func(s *sub) bool { return s.id == view.ID })
	switch {
	case view.Status == "canceled" && i >= 0:
		l.subs = slices.Delete(l.subs, i, i+1) // nothing more to do with it
	case view.Status == "canceled":
	case i >= 0:
		*l.subs[i] = sub{id: view.ID, plan: view.PlanID, seats: view.Seats, status: view.Status}
	default:
		l.subs = append(l.subs, &sub{id: view.ID, plan: view.PlanID, seats: view.Seats, status: view.Status})
	}
}

// moveClock moves the test clock forward by 1-7 days every ClockEvery. The service works
// through what came due before it answers, so a move can take a while; it is retried like any
// other request (a move to the same time is harmless).
func (l *Load) moveClock(rng *rand.Rand) {
	ticker := time.NewTicker(l.cfg.ClockEvery)
	defer ticker.Stop()
	for {
		select {
		case <-l.stopping:
			return
		case <-ticker.C:
		}
		now, ok := l.clockNow()
		if !ok {
			continue
		}
		to := now.Add(time.Duration(24+rng.IntN(6*24)) * time.Hour).Add(time.Duration(rng.IntN(3600)) * time.Second)
		body := mustJSON(map[string]any{"now": to.UTC().Format(time.RFC3339)})
		l.count(func(s *Stats) { s.Operations++ })
		for attempt := 0; ; attempt++ {
			if attempt > 0 && !l.retryAfter(100*time.Millisecond) {
				return
			}
			a, _, err := l.sendOnce(l.hard, l.pick(), http.MethodPost, "/v1/test/clock", "", body)
			if err != nil {
				l.count(func(s *Stats) { s.Unresolved++ })
				return
			}
			if retryable(a) {
				continue
			}
			l.mu.Lock()
			l.stats.Final[a.Status]++
			if a.Status == http.StatusOK {
				l.stats.ClockMoves++
			} else {
				l.stats.ClockRefused = append(l.stats.ClockRefused, a)
			}
			l.mu.Unlock()
			break
		}
	}
}

// clockNow reads the test clock from any process that answers.
func (l *Load) clockNow() (time.Time, bool) {
	for range len(l.cfg.URLs) {
		a, resp, err := l.sendOnce(l.hard, l.pick(), http.MethodGet, "/v1/test/clock", "", nil)
		if err != nil {
			return time.Time{}, false
		}
		var c struct {
			Now time.Time `json:"now"`
		}
		if a.Status == http.StatusOK && json.Unmarshal(resp, &c) == nil {
			return c.Now, true
		}
	}
	return time.Time{}, false
}

func (l *Load) pick() string {
	return l.cfg.URLs[l.next.Add(1)%uint64(len(l.cfg.URLs))]
}

func (l *Load) count(f func(*Stats)) {
	l.mu.Lock()
	f(&l.stats)
	l.mu.Unlock()
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}
