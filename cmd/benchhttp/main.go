// Command benchhttp measures billingd's HTTP commands against the machine's limit (issue 7).
//
// Each run starts a billingd (relay, projectors and billing scheduler included) on a fresh
// database and Redis prefix, creates an API key with billingctl, and drives the API with vegeta:
// POST /v1/subscriptions at fixed rates and at saturation (a fixed number of workers, each
// sending its next request as soon as the last one is answered), then paid seat increases (the
// upgrade saga) and plan downgrades on the subscriptions it created. In the same run, on the same
// database server, it measures the baseline: plain single-row INSERTs of the events table's row
// shape into a bare table, from as many writers as the saturation phases have workers. It prints
// one table per run and, with -runs N, the medians.
//
// With -processes 1,2,3 it measures scaling over processes instead: for each count, a fresh
// database and that many billingd processes on it (one PostgreSQL, one Redis prefix, distinct
// ports and consumer names), the baseline, then saturated creates and saturated downgrades from
// the same number of workers, the requests spread round-robin over the processes.
//
// With -breakdown it measures where a saturated create's time goes: for each of billingd's
// WORKERS settings from all down to none (the API alone), a fresh database, the baseline and
// saturated creates, with the CPU time per operation of the load generator, billingd, PostgreSQL
// and Redis read from /proc. On a machine the load saturates, throughput ÷ the baseline is close
// to the baseline's CPU per operation ÷ the create's, so the table shows what each part costs.
//
//	make bench-http
//	go run ./cmd/benchhttp -bin .data/bin -runs 3 -duration 10s
//	make bench-scale
//	go run ./cmd/benchhttp -bin .data/bin -processes 1,2,3 -runs 3
//	make bench-breakdown
//	go run ./cmd/benchhttp -bin .data/bin -breakdown -runs 3
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchhttp:", err)
		os.Exit(1)
	}
}

// options are the command line's settings.
type options struct {
	bin           string // directory holding billingd and billingctl
	databaseURL   string // the server's admin URL; each run creates its own database there
	redisURL      string
	duration      time.Duration // of each phase
	createRates   []int         // fixed rates of the create phases, per second
	upgradeRate   int           // fixed rate of the paid seat increases (0: skip the fixed phase)
	downgradeRate int           // fixed rate of the downgrades (0: skip the fixed phase)
	workers       int           // concurrency of the saturation phases and of the baseline
	runs          int
	cpuProfile    string   // where to write a CPU profile of billingd during run 1's saturated creates
	only          string   // run only the phases of this command: create, upgrade or downgrade
	logLevel      string   // billingd's LOG_LEVEL
	env           []string // more of billingd's settings, NAME=value
	processes     []int    // measure scaling over these numbers of processes instead
	breakdown     bool     // measure the CPU cost of a create by worker instead
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	o := options{
		databaseURL: or(getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		redisURL:    or(getenv("REDIS_URL"), "redis://127.0.0.1:6379/0"),
	}
	fs := flag.NewFlagSet("benchhttp", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", ".data/bin", "directory holding the billingd and billingctl binaries")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each phase")
	rates := fs.String("create-rates", "250,500,1000", "fixed rates of the create phases, per second, comma separated")
	fs.IntVar(&o.upgradeRate, "upgrade-rate", 100, "fixed rate of paid seat increases per second (0 skips it)")
	fs.IntVar(&o.downgradeRate, "downgrade-rate", 500, "fixed rate of downgrades per second (0 skips it)")
	fs.IntVar(&o.workers, "workers", 32, "concurrent workers of the saturation phases, and writers of the baseline")
	fs.IntVar(&o.runs, "runs", 1, "runs, each on a fresh database and billingd; more than one prints medians")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of billingd during the first run's saturated creates to this file")
	fs.StringVar(&o.only, "only", "", "run only the phases of one command: create, upgrade or downgrade")
	fs.StringVar(&o.logLevel, "log-level", "info", "billingd's LOG_LEVEL (its log goes to a file)")
	fs.Func("env", "a setting for billingd, NAME=value (repeatable), e.g. GROUP_COMMIT_MAX_BATCH=1", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want NAME=value")
		}
		o.env = append(o.env, v)
		return nil
	})
	fs.BoolVar(&o.breakdown, "breakdown", false, "measure where a saturated create's time goes instead: billingd with WORKERS=all, relay,projectors, relay and none, each on a fresh database beside its own bare INSERT, with the CPU time of each kind of process")
	procs := fs.String("processes", "", "measure scaling instead: saturated creates and downgrades against each number of billingd processes, comma separated (e.g. 1,2,3)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.processes, err = positiveInts(*procs); err != nil {
		return fmt.Errorf("-processes: %w", err)
	}
	for _, r := range strings.Split(*rates, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		n, err := strconv.Atoi(r)
		if err != nil || n < 1 {
			return fmt.Errorf("-create-rates: %q is not a positive rate", r)
		}
		o.createRates = append(o.createRates, n)
	}
	switch o.only {
	case "", "create", "upgrade", "downgrade":
	default:
		return fmt.Errorf("-only %q: want create, upgrade or downgrade", o.only)
	}
	for _, v := range o.env {
		// Between phases benchhttp waits for the relay, projectors and scheduler to finish what
		// the last phase set off; without them it would wait for work no process does.
		if strings.HasPrefix(v, "WORKERS=") && v != "WORKERS=all" {
			return fmt.Errorf("-env %s: every phase needs billingd's every worker; -breakdown measures without them", v)
		}
	}
	if o.workers < 1 || o.runs < 1 || o.duration < time.Second {
		return fmt.Errorf("want -workers ≥ 1, -runs ≥ 1 and -duration ≥ 1s")
	}

	vegeta, err := findVegeta(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "benchhttp: %d run(s), %s per phase, saturation and baseline at %d workers; vegeta %s; billingd %s %v\n",
		o.runs, o.duration, o.workers, vegeta, o.bin, o.env)
	if len(o.processes) > 0 {
		return scale(ctx, o, vegeta, out)
	}
	if o.breakdown {
		return breakdown(ctx, o, vegeta, out)
	}
	var all [][]result
	for i := range o.runs {
		results, err := benchRun(ctx, o, vegeta, i, out)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Fprintf(out, "\nrun %d of %d\n", i+1, o.runs)
		printTable(out, results)
		all = append(all, results)
	}
	if o.runs > 1 {
		fmt.Fprintf(out, "\nmedians of %d runs (errors summed, RSS the highest)\n", o.runs)
		printTable(out, medians(all))
	}
	return nil
}

// scale runs the scaling benchmark: every process count in every run, each on its own database.
func scale(ctx context.Context, o options, vegeta string, out io.Writer) error {
	return repeated(o, out, "scaling", o.processes, func(n int) string { return fmt.Sprintf("%d processes", n) },
		func(n int) ([]result, error) { return scaleRun(ctx, o, vegeta, n, out) }, printScaleTable)
}

// repeated runs every configuration in each of o.runs runs, printing each run's table and, for
// more than one run, the medians.
func repeated[C any](o options, out io.Writer, title string, configs []C, name func(C) string,
	one func(C) ([]result, error), print func(io.Writer, []result)) error {
	var all [][]result
	for i := range o.runs {
		var results []result
		for _, c := range configs {
			r, err := one(c)
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", i+1, name(c), err)
			}
			results = append(results, r...)
		}
		fmt.Fprintf(out, "\n%s, run %d of %d\n", title, i+1, o.runs)
		print(out, results)
		all = append(all, results)
	}
	if o.runs > 1 {
		fmt.Fprintf(out, "\n%s, medians of %d runs (errors summed, RSS the highest)\n", title, o.runs)
		print(out, medians(all))
	}
	return nil
}

// positiveInts parses a comma-separated list of positive integers ("" is none).
func positiveInts(list string) ([]int, error) {
	var out []int
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", v)
		}
		out = append(out, n)
	}
	return out, nil
}

func or(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
