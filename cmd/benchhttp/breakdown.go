package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/billing-oss/billing/internal/scratch"
)

// workerSets are the billingd configurations the breakdown compares, from everything a create
// sets off down to the command alone: without the scheduler no first invoice is collected,
// without the projectors no read model is written, without the relay nothing is published.
var workerSets = []string{"all", "relay,projectors", "relay", "none"}

// breakdownRun is one run of the breakdown with billingd's WORKERS set to workers: a fresh
// database, the bare INSERT baseline, then saturated creates, each with the CPU time every kind
// of process spent on it.
func breakdownRun(ctx context.Context, o options, vegeta, workers string, out io.Writer) ([]result, error) {
	tag := scratch.Tag()
	o.env = append(append([]string(nil), o.env...), "WORKERS="+workers)
	s, err := startServer(ctx, o, tag)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	fmt.Fprintf(out, "\nWORKERS=%s on database billing_bench_%s\n", workers, tag)

	var cpuErr error // the first failure to read /proc, reported at the end
	sample := func() cpuSample {
		c, err := readCPU()
		if cpuErr == nil {
			cpuErr = err
		}
		return c
	}
	// cpuFigures sets r's CPU figures per success from the samples.
	cpuFigures := func(r *result, before, after cpuSample, load time.Duration) {
		use := after.since(before, load)
		r.workerSet, r.cpu, r.idle = workers, use.perOp(r.requests-r.errors), use.idle
		fmt.Fprintf(out, "  %-17s %7.0f/s, %d errors, CPU per operation %s, machine idle %.0f%%\n",
			r.name, r.throughput, r.errors, cpuCells(r.cpu), 100*r.idle)
	}
	// left is the work the creates set off that is still undone: the relay's and projectors'
	// lag (summed; -1 if unknown) and the payments due.
	left := func(r *result) {
		r.lag = -1
		if _, lag, err := s.progress(); err == nil {
			r.lag = int(lag)
		}
		r.due = s.billingDue(ctx)
		fmt.Fprintf(out, "  left undone: lag %d (relay and projectors, summed), %d payments due\n", r.lag, r.due)
	}

	s.settle(ctx)
	start := sample()
	bare, err := bareInsert(ctx, s.dbURL, o.workers, o.duration)
	if err != nil {
		return nil, fmt.Errorf("bare insert: %w", err)
	}
	// The bare INSERT's connections have closed, their backends are exiting.
	end, err := reaped(start, cpuPostgres)
	if err != nil {
		return nil, fmt.Errorf("read CPU times: %w", err)
	}
	cpuFigures(&bare, start, end, 0)

	b := &bench{servers: []*server{s}, tag: tag}
	start = sample()
	hits, load, err := attack(ctx, vegeta, 0, o.workers, o.duration, b.createTarget("sat"))
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	create := summarize("create", 0, o.workers, hits, wantCreated)
	cpuFigures(&create, start, sample(), load)
	// The CPU time of the work left undone is not in those figures (a worker that does not run
	// leaves all of its work undone).
	left(&create)
	results := []result{bare, create}
	if workers == workerSets[0] {
		// With every worker running, the work left can be done: the figures again, until it is.
		caught := time.Now()
		s.settle(ctx) // gives up after 5 minutes: left tells
		all := create
		all.name = "create, caught up"
		cpuFigures(&all, start, sample(), load)
		all.catchUp = time.Since(caught)
		left(&all)
		results = append(results, all)
	}
	if cpuErr != nil {
		return nil, fmt.Errorf("read CPU times: %w", cpuErr)
	}
	return withRatios(results), nil
}

// breakdown runs every worker set in every run and prints the table of each run and the medians.
func breakdown(ctx context.Context, o options, vegeta string, out io.Writer) error {
	return repeated(o, out, "breakdown", workerSets, func(set string) string { return "WORKERS=" + set },
		func(set string) ([]result, error) { return breakdownRun(ctx, o, vegeta, set, out) }, printBreakdownTable)
}

// printBreakdownTable writes the breakdown as a Markdown table: each saturated create phase
// beside its own baseline, with the CPU time per operation of each kind of process, and that
// time as a multiple of the bare INSERT's.
func printBreakdownTable(w io.Writer, results []result) {
	fmt.Fprintln(w, "| billingd WORKERS | phase | throughput/s | ÷ bare INSERT | p50 | CPU ms per operation: client | billingd | PostgreSQL | Redis | all | CPU ÷ bare INSERT's | machine idle | left at the end: lag, payments due |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	var bareCPU float64
	for _, r := range results {
		if r.name == bareName {
			bareCPU = r.cpu["all"]
			fmt.Fprintf(w, "| %s | %s | %.0f | 1 | | %s | 1 | %.0f%% | |\n", r.workerSet, r.name, r.throughput, cpuCells(r.cpu), 100*r.idle)
			continue
		}
		times := ""
		if bareCPU > 0 {
			times = fmt.Sprintf("%.1f×", r.cpu["all"]/bareCPU)
		}
		if r.catchUp > 0 {
			fmt.Fprintf(w, "| %s | %s | | | | %s | %s | %.0f%% | %d, %d after %.1f s more |\n", r.workerSet, r.name,
				cpuCells(r.cpu), times, 100*r.idle, r.lag, r.due, r.catchUp.Seconds())
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | **%.2f** | %s | %s | %s | %.0f%% | %d, %d |\n", r.workerSet, r.name, r.throughput, r.ratio,
			ms(r.p50), cpuCells(r.cpu), times, 100*r.idle, r.lag, r.due)
	}
}

// cpuCells are the CPU figures of an operation as table cells: each group's, then their sum.
func cpuCells(cpu map[string]float64) string {
	s := ""
	for i, g := range append(cpuGroups, "all") {
		if i > 0 {
			s += " | "
		}
		s += fmt.Sprintf("%.3f", cpu[g])
	}
	return s
}
