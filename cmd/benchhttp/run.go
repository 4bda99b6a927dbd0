package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/billing-oss/billing/internal/scratch"
)

// benchRun is one run: a fresh database and billingd, every phase, then both are gone.
func benchRun(ctx context.Context, o options, vegeta string, runIndex int, out io.Writer) ([]result, error) {
	tag := scratch.Tag()
	s, err := startServer(ctx, o, tag)
	if err != nil {
		return nil, err
	}
	defer s.stop()

	b := &bench{servers: []*server{s}, tag: tag}
	var results []result
	phase := func(name string, rate int, want []int, next func(i int) (target, bool), during func()) error {
		s.settle(ctx)
		s.resetPeakRSS()
		since := s.dbNow(ctx)
		var wg sync.WaitGroup
		if during != nil {
			wg.Go(during)
		}
		hits, _, err := attack(ctx, vegeta, rate, o.workers, o.duration, next)
		wg.Wait()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r := summarize(name, rate, o.workers, hits, want)
		r.rssPeak, _ = s.rss()
		if name == "create" {
			b.collectIDs(hits)
			r.perTx = s.createsPerTransaction(ctx, since)
		}
		fmt.Fprintf(out, "  %-10s %-12s %6d requests, %6.0f/s, %d errors, statuses %v, %.1f per transaction\n", name,
			offered(r), r.requests, r.throughput, r.errors, r.statuses, r.perTx)
		if r.errors > 0 {
			fmt.Fprintf(out, "    a transport error: %q; billingd's first logged error: %v\n", r.sample, s.errorLines(1))
		}
		results = append(results, r)
		return nil
	}

	fmt.Fprintf(out, "\nrun %d: billingd on database billing_bench_%s\n", runIndex+1, tag)
	// Creates run even with -only upgrade or downgrade: they make the subscriptions to change.
	for _, rate := range o.createRates {
		if err := phase("create", rate, wantCreated, b.createTarget("r"+fmt.Sprint(rate)), nil); err != nil {
			return nil, err
		}
	}
	// The baseline right before the saturated creates it is compared with, under the same
	// conditions (the same database server, billingd idle and its pipeline caught up).
	s.settle(ctx)
	bare, err := bareInsert(ctx, s.dbURL, o.workers, o.duration)
	if err != nil {
		return nil, fmt.Errorf("bare insert: %w", err)
	}
	fmt.Fprintf(out, "  %-10s %-12s %6d rows,     %6.0f/s\n", bare.name, offered(bare), bare.requests, bare.throughput)
	results = append(results, bare)
	var profile func()
	if o.cpuProfile != "" && runIndex == 0 {
		profile = func() {
			if err := s.profile(ctx, o.duration-time.Second, o.cpuProfile); err != nil {
				fmt.Fprintf(out, "  cpu profile: %v\n", err)
			}
		}
	}
	s.settle(ctx)
	before, err := s.databaseWork(ctx)
	if err != nil {
		return nil, err
	}
	if err := phase("create", 0, wantCreated, b.createTarget("sat"), profile); err != nil {
		return nil, err
	}
	// What the database did for those creates, the relay's and projectors' work included.
	s.settle(ctx)
	after, err := s.databaseWork(ctx)
	if err != nil {
		return nil, err
	}
	printWork(out, before, after, results[len(results)-1].throughput*o.duration.Seconds())
	if o.only == "" || o.only == "upgrade" {
		// A seat more on a subscription of 2: a paid change, so the request runs the upgrade
		// saga (invoice, charge through the sandbox gateway, apply) before it answers 200, or
		// 202 if the saga is still running after 10 s (the scheduler then finishes it).
		seats := b.changeTarget("seats", `{"seats": 3}`)
		if o.upgradeRate > 0 {
			if err := phase("upgrade", o.upgradeRate, wantUpgraded, seats, nil); err != nil {
				return nil, err
			}
		}
		if err := phase("upgrade", 0, wantUpgraded, seats, nil); err != nil {
			return nil, err
		}
	}
	if o.only == "" || o.only == "downgrade" {
		// Pro to Starter: a downgrade, scheduled for the period's end; one event, no invoice.
		down := b.changeTarget("change-plan", `{"plan_id": "starter_monthly"}`)
		if o.downgradeRate > 0 {
			if err := phase("downgrade", o.downgradeRate, wantChanged, down, nil); err != nil {
				return nil, err
			}
		}
		if err := phase("downgrade", 0, wantChanged, down, nil); err != nil {
			return nil, err
		}
	}
	return withRatios(results), nil
}

// The answers that count as successes.
var (
	wantCreated  = []int{http.StatusCreated}
	wantUpgraded = []int{http.StatusOK, http.StatusAccepted}
	wantChanged  = []int{http.StatusOK}
)

// bench holds what the phases of one run share: the subscriptions created so far, each changed
// at most once per kind of change, so that every change request is valid.
type bench struct {
	servers []*server // requests go to them in turn
	tag     string

	mu      sync.Mutex
	ids     []string       // subscriptions created, in order
	cursors map[string]int // per change path: the next id to use
}

// createTarget gives a create request for a customer of its own (so creates do not queue on one
// customer's invoice series) with a unique Idempotency-Key.
func (b *bench) createTarget(phase string) func(i int) (target, bool) {
	return func(i int) (target, bool) {
		body := fmt.Sprintf(`{"customer_id": "cus_%s_%s_%d", "plan_id": "pro_monthly", "seats": 2, "trial_days": 0, `+
			`"payment_method": "pm_card_ok"}`, b.tag, phase, i)
		return b.target(i, "/v1/subscriptions", fmt.Sprintf("create-%s-%s-%d", b.tag, phase, i), body), true
	}
}

// changeTarget gives a change request on the next subscription not yet changed this way; it
// reports false when there is none left.
func (b *bench) changeTarget(path, body string) func(i int) (target, bool) {
	return func(i int) (target, bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.cursors == nil {
			b.cursors = map[string]int{}
		}
		n := b.cursors[path]
		if n >= len(b.ids) {
			return target{}, false
		}
		b.cursors[path] = n + 1
		id := b.ids[n]
		return b.target(n, "/v1/subscriptions/"+id+"/"+path, fmt.Sprintf("%s-%s-%s", path, b.tag, id), body), true
	}
}

// target is a request to the i-th server in turn (round-robin).
func (b *bench) target(i int, path, key, body string) target {
	s := b.servers[i%len(b.servers)]
	return target{Method: "POST", URL: s.url + path, Body: []byte(body), Header: map[string][]string{
		"Authorization":   {"Bearer " + s.apiKey},
		"Content-Type":    {"application/json"},
		"Idempotency-Key": {key},
	}}
}

// collectIDs keeps the ids of the subscriptions the hits created.
func (b *bench) collectIDs(hits []hit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range hits {
		var created struct {
			ID string `json:"id"`
		}
		if h.Code == http.StatusCreated && json.Unmarshal(h.Body, &created) == nil && created.ID != "" {
			b.ids = append(b.ids, created.ID)
		}
	}
}
