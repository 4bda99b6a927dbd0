package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// `billingctl demo seed` gives a new installation a year of history to look at: customers
// arrive, upgrade, add and remove seats, pause, cancel, let their cards fail and fix them, and
// the service renews and collects, all through the public API of a billingd running with
// BILLING_TEST_CLOCK=true, whose clock the seed walks through the year. It is a client like any
// other: it never touches the database, so what it produces is what the API really does.

// demoConfig is what `demo seed` was asked for.
type demoConfig struct {
	url       string
	key       string
	customers int
	seed      uint64
	start     time.Time // zero: the test clock's time
}

// demoKeyFile is where `make run` writes the admin key it creates.
const demoKeyFile = ".data/api-key"

func parseDemoSeed(args []string, getenv func(string) string) (demoConfig, error) {
	fs := flag.NewFlagSet("demo seed", flag.ContinueOnError)
	addr := fs.String("url", "http://localhost:8080", "billingd's address")
	key := fs.String("key", "", "an admin API key (default $BILLING_API_KEY, else the file "+demoKeyFile+" that make run writes)")
	customers := fs.Int("customers", 120, "how many customers arrive over the year")
	seed := fs.Uint64("seed", 1, "the random seed: the same seed, catalog and start make the same year")
	start := fs.String("start", "", "when the year starts, RFC 3339 or YYYY-MM-DD in UTC (default: the test clock's time)")
	if err := fs.Parse(args); err != nil {
		return demoConfig{}, err
	}
	if fs.NArg() > 0 {
		return demoConfig{}, fmt.Errorf("demo seed: unexpected arguments %q", fs.Args())
	}
	cfg := demoConfig{url: *addr, key: *key, customers: *customers, seed: *seed}
	if u, err := url.Parse(cfg.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return demoConfig{}, fmt.Errorf("demo seed: --url %q: want an http(s) address such as http://localhost:8080", cfg.url)
	}
	if cfg.customers < 1 || cfg.customers > 100_000 {
		return demoConfig{}, fmt.Errorf("demo seed: --customers %d: want 1 to 100000", cfg.customers)
	}
	if *start != "" {
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			t, err = time.Parse(time.DateOnly, *start)
		}
		if err != nil {
			return demoConfig{}, fmt.Errorf("demo seed: --start %q: want RFC 3339 (2025-01-01T00:00:00Z) or a date (2025-01-01)", *start)
		}
		cfg.start = t.UTC().Truncate(time.Second)
	}
	if cfg.key == "" {
		cfg.key = getenv("BILLING_API_KEY")
	}
	if cfg.key == "" {
		raw, err := os.ReadFile(demoKeyFile)
		if err != nil {
			return demoConfig{}, fmt.Errorf("demo seed: no API key: pass --key, set BILLING_API_KEY, or run make run, which writes %s", demoKeyFile)
		}
		cfg.key = strings.TrimSpace(string(raw))
	}
	return cfg, nil
}

// demoSeed runs `billingctl demo seed`.
func demoSeed(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	cfg, err := parseDemoSeed(args, getenv)
	if err != nil {
		return err
	}
	w, err := newDemoWalk(ctx, newAPIClient(cfg.url, cfg.key), cfg, out)
	if err != nil {
		return fmt.Errorf("demo seed: %w", err)
	}
	if err := w.run(ctx); err != nil {
		return fmt.Errorf("demo seed: %w", err)
	}
	return nil
}

const (
	// demoStep is how far the clock moves at a time: twice a week, so that a year has the
	// texture of daily traffic and every change lands within a few days of its cause.
	demoStep = 84 * time.Hour
	// stepShare turns a monthly chance into the chance per step.
	stepShare = float64(demoStep) / float64(30*24*time.Hour+10*time.Hour+30*time.Minute)
	// demoGrowth shapes arrivals: the last step brings 1+demoGrowth times as many new customers
	// as the first, a business that grows through the year.
	demoGrowth = 2.0
)

// demoWalk is one run of the seed: the catalog, what the walk knows of each subscription it
// made, and what happened.
type demoWalk struct {
	api        *apiClient
	cfg        demoConfig
	out        io.Writer
	rng        *rand.Rand
	plans      []planJSON
	currencies []string
	start      time.Time
	runTag     string // names this run in customer ids and idempotency keys
	subs       []*demoSub

	step, request int       // where the walk is, for idempotency keys
	resumeUntil   time.Time // steps before it replay an interrupted run (see newDemoWalk)
	replaying     bool
	fromPosition  int64 // the log's end when the walk began: its events come after it
	lastAnswered  *demoSub
	lastVersion   int64 // lastAnswered's version in the service's last answer about it
	tally         demoTally
}

func newDemoWalk(ctx context.Context, api *apiClient, cfg demoConfig, out io.Writer) (*demoWalk, error) {
	now, err := api.clock(ctx)
	if err != nil {
		return nil, err
	}
	var catalog struct{ Data []planJSON }
	if err := api.get(ctx, "/v1/plans", &catalog); err != nil {
		return nil, err
	}
	if len(catalog.Data) == 0 {
		return nil, errors.New("the catalog has no plans")
	}
	w := &demoWalk{api: api, cfg: cfg, out: out, plans: catalog.Data,
		rng: rand.New(rand.NewPCG(cfg.seed, 0x64656d6f)), start: cmp.Or(cfg.start, now), tally: newDemoTally()}
	for _, p := range w.plans {
		if !slices.Contains(w.currencies, p.Currency) {
			w.currencies = append(w.currencies, p.Currency)
		}
	}
	slices.Sort(w.currencies)
	w.runTag = fmt.Sprintf("%d-%d-%s", cfg.seed, cfg.customers, w.start.Format("20060102T150405"))

	if w.start.Before(now) {
		// The clock only moves forward, so a year can start before it only if this is a run that
		// was interrupted: its requests replay from the service's idempotency records (kept
		// 24 hours), which rebuilds the walk's state up to the step where it stopped.
		resuming, err := w.startedBefore(ctx)
		if err != nil {
			return nil, err
		}
		if !resuming {
			return nil, fmt.Errorf("--start %s is before the test clock (%s), and the clock only moves forward: "+
				"omit --start to begin at the clock, or give a later time", w.start.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		w.resumeUntil = now
		fmt.Fprintf(out, "resuming the run that started at %s: the steps before %s replay from the service's idempotency records\n",
			w.start.Format(time.RFC3339), now.Format(time.RFC3339))
	} else if w.fromPosition, err = w.logEnd(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// startedBefore reports whether this run's first customer exists.
func (w *demoWalk) startedBefore(ctx context.Context) (bool, error) {
	var page struct{ Data []subscriptionJSON }
	err := w.api.get(ctx, "/v1/subscriptions?limit=1&customer_id="+url.QueryEscape(w.customerID(1)), &page)
	return len(page.Data) > 0, err
}

func (w *demoWalk) customerID(n int) string { return fmt.Sprintf("cus_demo-%s-%04d", w.runTag, n) }

// demoSteps are the times the clock visits: every demoStep from start, and the year's end.
func demoSteps(start time.Time) []time.Time {
	end := start.AddDate(1, 0, 0)
	var steps []time.Time
	for t := start; t.Before(end); t = t.Add(demoStep) {
		steps = append(steps, t)
	}
	return append(steps, end)
}

// arrivals spreads n customers over steps steps along a line that rises by demoGrowth: exact
// in total, and the same for the same n.
func arrivals(n, steps int) []int {
	weight := func(k int) float64 { return 1 + demoGrowth*float64(k)/float64(max(steps-1, 1)) }
	var total float64
	for k := range steps {
		total += weight(k)
	}
	out := make([]int, steps)
	var cum float64
	prev := 0
	for k := range steps {
		cum += weight(k)
		upTo := int(float64(n)*cum/total + 0.5)
		out[k], prev = upTo-prev, upTo
	}
	return out
}

func (w *demoWalk) run(ctx context.Context) error {
	steps := demoSteps(w.start)
	arriving := arrivals(w.cfg.customers, len(steps)-1) // nobody arrives as the year closes
	fmt.Fprintf(w.out, "seeding %d customers from %s to %s (seed %d), moving the test clock at %s\n",
		w.cfg.customers, w.start.Format(time.RFC3339), steps[len(steps)-1].Format(time.RFC3339), w.cfg.seed, w.api.base)
	for k, at := range steps {
		n := 0
		if k < len(arriving) {
			n = arriving[k]
		}
		if err := w.runStep(ctx, k, at, n); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted at %s; to finish this year, run again with --start %s --seed %d --customers %d",
					at.Format(time.RFC3339), w.start.Format(time.RFC3339), w.cfg.seed, w.cfg.customers)
			}
			return err
		}
		if k == len(steps)-1 || steps[k+1].Month() != at.Month() {
			if err := w.progress(ctx, at); err != nil {
				return err
			}
		}
	}
	return w.summary(ctx)
}

// runStep moves the clock to at, which lets the service renew and collect what came due, then
// lets every subscription act and new customers arrive. Subscriptions made in this step act
// from the next one: their first payments are still being collected in the background.
func (w *demoWalk) runStep(ctx context.Context, k int, at time.Time, arriving int) error {
	w.step, w.request = k, 0
	w.replaying = at.Before(w.resumeUntil)
	if !w.replaying {
		processed, err := w.api.moveClock(ctx, at)
		if err != nil {
			return err
		}
		w.tally.clockMoves++
		w.tally.processed += processed
	}
	for _, s := range w.subs {
		if err := w.act(ctx, s, at); err != nil {
			return err
		}
	}
	for range arriving {
		if err := w.arrive(ctx); err != nil {
			return err
		}
	}
	return nil
}

// post sends a command with this step's next Idempotency-Key and counts its answer under kind.
// The key is derived from the run (seed, customers, start), the step and the request's place in
// it, so running the same walk again sends the same keys and the service replays its answers
// instead of acting twice.
func (w *demoWalk) post(ctx context.Context, kind, path string, body, out any) (answer, error) {
	w.request++
	key := fmt.Sprintf("demo-%s-%d-%d", w.runTag, w.step, w.request)
	a, err := w.api.call(ctx, http.MethodPost, path, key, body, out)
	if err != nil {
		return a, err
	}
	if a.problem.Type == "/problems/idempotency-key-reused" {
		return a, fmt.Errorf("POST %s: Idempotency-Key %s was used before for another request: "+
			"another run with this --seed, --customers and --start saw a different catalog or service; use another --seed", path, key)
	}
	if w.replaying && !a.replayed {
		return a, fmt.Errorf("POST %s (Idempotency-Key %s) ran instead of replaying: the interrupted run used other flags "+
			"or its idempotency records expired (24 hours), so it cannot be resumed; start a new year without --start", path, key)
	}
	w.tally.count(kind, a)
	return a, nil
}

// progress prints the month's line: how many subscriptions and how much MRR the dashboard shows.
func (w *demoWalk) progress(ctx context.Context, at time.Time) error {
	if w.replaying {
		fmt.Fprintf(w.out, "%s  replayed\n", at.Format("2006-01"))
		return nil
	}
	behind, err := w.awaitReadModels(ctx)
	if err != nil {
		return err
	}
	sums, err := w.summaries(ctx)
	if err != nil {
		return err
	}
	var total summaryJSON
	for _, s := range sums {
		total.Active += s.Active
		total.Trialing += s.Trialing
		total.PastDue += s.PastDue
		total.Paused += s.Paused
		total.Canceled += s.Canceled
	}
	fmt.Fprintf(w.out, "%s  customers %4d  subscriptions %4d (%d active, %d trialing, %d past due, %d paused, %d canceled)  MRR %s\n",
		at.Format("2006-01"), len(w.subs), total.subscriptions(), total.Active, total.Trialing, total.PastDue,
		total.Paused, total.Canceled, w.mrr(sums))
	if behind {
		fmt.Fprintln(w.out, "         (the read models were still catching up: the dashboard trails these steps)")
	}
	return nil
}

// awaitReadModels waits (up to 30 seconds) until the read models have caught up with the event
// store, so that the dashboard figures are those of the month just walked: they trail the store
// by the projectors' lag, which a long transaction anywhere on the database server can stretch
// to seconds. billingd's /metrics says how many events its projectors have yet to apply; where
// it does not, the walk waits for its last answered command to show in the subscription list,
// which it cannot do for the events of the other partitions. It reports whether they were
// still behind when it gave up.
func (w *demoWalk) awaitReadModels(ctx context.Context) (bool, error) {
	for deadline := time.Now().Add(30 * time.Second); ; {
		caughtUp, err := w.readModelsCaughtUp(ctx)
		if err != nil || caughtUp {
			return false, err
		}
		if time.Now().After(deadline) {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *demoWalk) readModelsCaughtUp(ctx context.Context) (bool, error) {
	lag, ok, err := w.api.projectorLag(ctx)
	if err != nil || ok {
		return lag == 0, err
	}
	if w.lastAnswered == nil {
		return true, nil
	}
	var page struct{ Data []subscriptionJSON }
	err = w.api.get(ctx, "/v1/subscriptions?limit=1&customer_id="+url.QueryEscape(w.lastAnswered.customer), &page)
	return len(page.Data) > 0 && page.Data[0].Version >= w.lastVersion, err
}

// summaries reads the dashboard summary of every currency in the catalog, in w.currencies' order.
func (w *demoWalk) summaries(ctx context.Context) ([]summaryJSON, error) {
	sums := make([]summaryJSON, len(w.currencies))
	for i, c := range w.currencies {
		if err := w.api.get(ctx, "/v1/dashboard/summary?currency="+c, &sums[i]); err != nil {
			return nil, err
		}
	}
	return sums, nil
}

func (w *demoWalk) mrr(sums []summaryJSON) string {
	parts := make([]string, len(sums))
	for i, s := range sums {
		parts[i] = w.currencies[i] + " " + money(s.MRR)
	}
	return strings.Join(parts, ", ")
}

// money formats an amount in minor units with two decimals (both catalog currencies have two).
func money(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	whole := fmt.Sprint(minor / 100)
	for i := len(whole) - 3; i > 0; i -= 3 {
		whole = whole[:i] + "," + whole[i:]
	}
	return fmt.Sprintf("%s%s.%02d", sign, whole, minor%100)
}
