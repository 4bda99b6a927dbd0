// Command benchrebuild measures `billingctl projections rebuild all` over a large event store
// (issue 7: 1,000,000 events) against the machine's limit.
//
// Each run creates a fresh database, migrates it with `billingctl migrate up`, and seeds it with
// a realistic backlog (internal/backlog: subscriptions created, seat and plan changes, upgrade
// sagas, renewals, invoices issued and paid) through eventstore.AppendMany in batches. In the
// same run, on the same database, it measures the baseline: plain multi-row INSERTs of as many
// rows of the events table's row shape into a bare table, in batches of the same size, from one
// connection (a rebuild is one connection reading and writing batch after batch). Then it runs
// the real billingctl binary, times it and drops the database. It prints one table per run and,
// with -runs N, the medians.
//
//	make bench-rebuild
//	go run ./cmd/benchrebuild -bin .data/bin -events 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchrebuild:", err)
		os.Exit(1)
	}
}

// options are the command line's settings.
type options struct {
	bin         string // directory holding billingctl
	databaseURL string // the server's admin URL; each run creates its own database there
	events      int    // in the store, and rows of the baseline
	batch       int    // events per AppendMany while seeding, rows per INSERT of the baseline
	writers     int    // concurrent seeding connections
	runs        int
	seed        uint64
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	o := options{databaseURL: or(getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")}
	fs := flag.NewFlagSet("benchrebuild", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", ".data/bin", "directory holding the billingctl binary")
	fs.IntVar(&o.events, "events", 1_000_000, "events in the store, and rows the baseline inserts")
	fs.IntVar(&o.batch, "batch", 1000, "events per AppendMany while seeding, and rows per INSERT of the baseline")
	fs.IntVar(&o.writers, "writers", 2, "concurrent connections seeding the store")
	fs.IntVar(&o.runs, "runs", 1, "runs, each on a fresh database; more than one prints medians")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the backlog's shape")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.events < 1 || o.batch < 1 || o.writers < 1 || o.runs < 1 {
		return fmt.Errorf("want -events, -batch, -writers and -runs ≥ 1")
	}
	fmt.Fprintf(out, "benchrebuild: %d run(s) of %d events, batches of %d; billingctl from %s\n", o.runs, o.events, o.batch, o.bin)
	var all []result
	for i := range o.runs {
		r, err := benchRun(ctx, o, i, out)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Fprintf(out, "\nrun %d of %d\n", i+1, o.runs)
		printTable(out, []result{r})
		all = append(all, r)
	}
	if o.runs > 1 {
		fmt.Fprintf(out, "\nmedians of %d runs\n", o.runs)
		printTable(out, []result{medians(all)})
	}
	return nil
}

func or(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
