package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// printTable writes results as a Markdown table: the baseline, the rebuild and its ratio to the
// baseline, then each projector's share of the rebuild.
func printTable(w io.Writer, results []result) {
	fmt.Fprintln(w, "| | events | time | events/s | ÷ bare INSERT |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, r := range results {
		bare, rebuild := rate(r.events, r.bare), rate(r.events, r.rebuild)
		fmt.Fprintf(w, "| %s, 1 connection | %d | %s | %.0f | 1 |\n", bareName, r.events, seconds(r.bare), bare)
		ratio := 0.0
		if bare > 0 {
			ratio = rebuild / bare
		}
		fmt.Fprintf(w, "| `billingctl projections rebuild all` | %d | %s | %.0f | **%.2f** |\n", r.events, seconds(r.rebuild), rebuild, ratio)
		for _, p := range r.projectors {
			fmt.Fprintf(w, "| of which %s (%d streams) | %d | %s | %.0f | %.2f |\n", p.name, p.streams, p.events, seconds(p.duration),
				rate(p.events, p.duration), rate(p.events, p.duration)/max(bare, 1))
		}
		fmt.Fprintf(w, "| (seeding: AppendMany) | %d | %s | %.0f | |\n", r.events, seconds(r.seed), rate(r.events, r.seed))
	}
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// medians combines runs: the median of each duration.
func medians(runs []result) result {
	m := runs[0]
	m.seed = median(runs, func(r result) time.Duration { return r.seed })
	m.bare = median(runs, func(r result) time.Duration { return r.bare })
	m.rebuild = median(runs, func(r result) time.Duration { return r.rebuild })
	m.projectors = slices.Clone(m.projectors)
	for i := range m.projectors {
		m.projectors[i].duration = median(runs, func(r result) time.Duration {
			if i < len(r.projectors) {
				return r.projectors[i].duration
			}
			return 0
		})
	}
	return m
}

func median(rs []result, f func(result) time.Duration) time.Duration {
	vs := make([]time.Duration, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}
