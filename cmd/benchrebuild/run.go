package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/backlog"
	"github.com/billing-oss/billing/internal/scratch"
)

// result is one run's figures.
type result struct {
	events     int
	seed       time.Duration // seeding the store, AppendMany
	bare       time.Duration // the baseline's INSERTs
	rebuild    time.Duration // billingctl projections rebuild all, process start to exit
	projectors []projectorResult
}

// projectorResult is one projector's line of billingctl's output.
type projectorResult struct {
	name     string
	events   int
	streams  int
	duration time.Duration
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// benchRun is one run: a fresh database, seeded, the baseline, the rebuild, then it is dropped.
func benchRun(ctx context.Context, o options, runIndex int, out io.Writer) (result, error) {
	r := result{events: o.events}
	name := "billing_rebuild_" + scratch.Tag()
	dbURL, drop, err := scratch.CreateDatabase(ctx, o.databaseURL, name)
	if err != nil {
		return r, err
	}
	defer drop()
	fmt.Fprintf(out, "\nrun %d: database %s\n", runIndex+1, name)
	if err := billingctl(ctx, o.bin, dbURL, io.Discard, "migrate", "up"); err != nil {
		return r, err
	}
	db, err := eventstore.NewPool(ctx, dbURL)
	if err != nil {
		return r, err
	}
	defer db.Close()

	start := time.Now()
	if err := seed(ctx, db, o); err != nil {
		return r, fmt.Errorf("seed: %w", err)
	}
	r.seed = time.Since(start)
	fmt.Fprintf(out, "  seeded %d events in %s (%.0f events/s, AppendMany of %d, %d connections)\n",
		o.events, r.seed.Round(time.Millisecond), rate(o.events, r.seed), o.batch, o.writers)
	// A store that has been live for a while has been vacuumed and analysed; a rebuild reading
	// one just written would also pay for setting every row's hint bits.
	start = time.Now()
	if _, err := db.Exec(ctx, `VACUUM (ANALYZE) events`); err != nil {
		return r, fmt.Errorf("vacuum: %w", err)
	}
	fmt.Fprintf(out, "  vacuumed and analysed events in %s\n", time.Since(start).Round(time.Millisecond))

	if r.bare, err = bareInsert(ctx, db, o); err != nil {
		return r, fmt.Errorf("bare insert: %w", err)
	}
	fmt.Fprintf(out, "  %s: %d rows in %s (%.0f rows/s)\n", bareName, o.events, r.bare.Round(time.Millisecond), rate(o.events, r.bare))

	var log strings.Builder
	start = time.Now()
	err = billingctl(ctx, o.bin, dbURL, &log, "projections", "rebuild", "all")
	r.rebuild = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("%w: %s", err, log.String())
	}
	r.projectors = parseRebuilt(log.String())
	fmt.Fprintf(out, "  billingctl projections rebuild all: %s (%.0f events/s)\n", r.rebuild.Round(time.Millisecond), rate(o.events, r.rebuild))
	for _, p := range r.projectors {
		fmt.Fprintf(out, "    %s: %d events, %d streams, %s\n", p.name, p.events, p.streams, p.duration)
	}
	return r, nil
}

// seed appends o.events events: one goroutine makes the batches, o.writers connections append them.
func seed(ctx context.Context, db *pgxpool.Pool, o options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []eventstore.StreamAppend, 2*o.writers)
	var genErr error
	go func() {
		defer close(batches)
		g := backlog.New(o.seed, time.Now().AddDate(-1, 0, 0))
		for left := o.events; left > 0; left -= o.batch {
			b, err := g.Batch(min(left, o.batch))
			if err != nil {
				genErr = err
				return
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var once sync.Once
	var appendErr error
	for range o.writers {
		wg.Go(func() {
			for b := range batches {
				if _, err := eventstore.AppendMany(ctx, db, b); err != nil {
					once.Do(func() { appendErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if appendErr != nil {
		return appendErr
	}
	return genErr
}

// rebuiltLine is billingctl's summary of one projector's rebuild.
var rebuiltLine = regexp.MustCompile(`(?m)^rebuilt (\S+): (\d+) events over (\d+) streams in (\S+) `)

func parseRebuilt(log string) []projectorResult {
	var out []projectorResult
	for _, m := range rebuiltLine.FindAllStringSubmatch(log, -1) {
		events, _ := strconv.Atoi(m[2])
		streams, _ := strconv.Atoi(m[3])
		d, _ := time.ParseDuration(m[4])
		out = append(out, projectorResult{name: m[1], events: events, streams: streams, duration: d})
	}
	return out
}

// billingctl runs the real binary against the run's database.
func billingctl(ctx context.Context, bin, dbURL string, out io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "billingctl"), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("billingctl %s (make build puts it in .data/bin): %w", strings.Join(args, " "), err)
	}
	return nil
}
