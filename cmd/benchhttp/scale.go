package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/billing-oss/billing/internal/scratch"
)

// scaleRun is one run of the scaling benchmark with n billingd processes: a fresh database and
// Redis prefix shared by all of them, the bare INSERT baseline, then saturated creates and
// saturated downgrades (of the subscriptions just created) from o.workers workers whatever n
// is, each request sent to the next process in turn.
func scaleRun(ctx context.Context, o options, vegeta string, n int, out io.Writer) ([]result, error) {
	tag := scratch.Tag()
	servers, err := startServers(ctx, o, tag, n)
	if err != nil {
		return nil, err
	}
	defer stopAll(servers)
	fmt.Fprintf(out, "\n%d billingd process(es) on database billing_bench_%s\n", n, tag)

	b := &bench{servers: servers, tag: tag}
	settle := func() {
		for _, s := range servers {
			s.settle(ctx)
		}
	}
	var results []result
	phase := func(name string, want []int, next func(i int) (target, bool)) error {
		settle()
		for _, s := range servers {
			s.resetPeakRSS()
		}
		hits, _, err := attack(ctx, vegeta, 0, o.workers, o.duration, next)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r := summarize(name, 0, o.workers, hits, want)
		r.processes = n
		for _, s := range servers {
			peak, _ := s.rss()
			r.rssPeaks = append(r.rssPeaks, peak)
			r.rssPeak = max(r.rssPeak, peak)
		}
		if name == "create" {
			b.collectIDs(hits)
		}
		fmt.Fprintf(out, "  %-10s %-12s %6d requests, %6.0f/s, %d errors, statuses %v\n", name, offered(r), r.requests,
			r.throughput, r.errors, r.statuses)
		if r.errors > 0 {
			for _, s := range servers {
				if lines := s.errorLines(1); len(lines) > 0 {
					fmt.Fprintf(out, "    a transport error: %q; a billingd's first logged error: %v\n", r.sample, lines)
					break
				}
			}
		}
		results = append(results, r)
		return nil
	}

	settle()
	bare, err := bareInsert(ctx, servers[0].dbURL, o.workers, o.duration)
	if err != nil {
		return nil, fmt.Errorf("bare insert: %w", err)
	}
	bare.processes = n
	fmt.Fprintf(out, "  %-10s %-12s %6d rows,     %6.0f/s\n", bare.name, offered(bare), bare.requests, bare.throughput)
	results = append(results, bare)
	if err := phase("create", wantCreated, b.createTarget("sat")); err != nil {
		return nil, err
	}
	// Pro to Starter, scheduled for the period's end: the subscriptions the creates made run out
	// if the downgrades are faster; the phase then ends early and counts what it sent.
	if err := phase("downgrade", wantChanged, b.changeTarget("change-plan", `{"plan_id": "starter_monthly"}`)); err != nil {
		return nil, err
	}
	return withRatios(results), nil
}

// printScaleTable writes the scaling results as a Markdown table, each process count's rows
// beside its own run's baseline.
func printScaleTable(w io.Writer, results []result) {
	fmt.Fprintln(w, "| processes | phase | load | requests | errors | throughput/s | ÷ bare INSERT | p50 | p99 | p99.9 | peak RSS per process |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		if r.name == bareName {
			fmt.Fprintf(w, "| %d | %s | %d writers | %d | | %.0f | 1 | | | | |\n", r.processes, r.name, r.workers, r.requests, r.throughput)
			continue
		}
		rss := make([]string, len(r.rssPeaks))
		for i, kb := range r.rssPeaks {
			rss[i] = fmt.Sprint(kb / 1024)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %d | %d | %.0f | **%.2f** | %s | %s | %s | %s MB |\n", r.processes, r.name, offered(r),
			r.requests, r.errors, r.throughput, r.ratio, ms(r.p50), ms(r.p99), ms(r.p999), strings.Join(rss, " / "))
	}
}
