package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// offered describes the load: a fixed rate, or saturation by a number of workers.
func offered(r result) string {
	if r.rate > 0 {
		return fmt.Sprintf("%d/s", r.rate)
	}
	return fmt.Sprintf("max, %d conc.", r.workers)
}

// withRatios sets each saturation phase's ratio to the bare INSERT rate of the same run.
func withRatios(results []result) []result {
	var bare float64
	for _, r := range results {
		if r.name == bareName {
			bare = r.throughput
		}
	}
	for i, r := range results {
		if r.rate == 0 && r.name != bareName && bare > 0 {
			results[i].ratio = r.throughput / bare
		}
	}
	return results
}

// printTable writes results as a Markdown table.
func printTable(w io.Writer, results []result) {
	fmt.Fprintln(w, "| phase | load | requests | errors | throughput/s | ÷ bare INSERT | p50 | p99 | p99.9 | max | billingd RSS peak | creates per tx |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		if r.name == bareName {
			fmt.Fprintf(w, "| %s | %d writers | %d | | %.0f | 1 | | | | | | |\n", r.name, r.workers, r.requests, r.throughput)
			continue
		}
		ratio, perTx := "", ""
		if r.ratio > 0 {
			ratio = fmt.Sprintf("**%.2f**", r.ratio)
		}
		if r.perTx > 0 {
			perTx = fmt.Sprintf("%.1f", r.perTx)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %.0f | %s | %s | %s | %s | %s | %d MB | %s |\n", r.name, offered(r), r.requests,
			r.errors, r.throughput, ratio, ms(r.p50), ms(r.p99), ms(r.p999), ms(r.max), r.rssPeak/1024, perTx)
	}
}

func ms(d time.Duration) string {
	switch {
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", d.Seconds()*1000)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", d.Seconds()*1000)
	}
	return fmt.Sprintf("%.2f ms", d.Seconds()*1000)
}

// medians combines runs phase by phase (the same phases in the same order in every run): the
// median of each figure, the errors summed and the highest RSS.
func medians(runs [][]result) []result {
	var out []result
	for i, first := range runs[0] {
		m := first
		var col []result
		for _, run := range runs {
			if i < len(run) {
				col = append(col, run[i])
			}
		}
		m.requests = int(median(col, func(r result) float64 { return float64(r.requests) }))
		m.throughput = median(col, func(r result) float64 { return r.throughput })
		m.ratio = median(col, func(r result) float64 { return r.ratio })
		m.perTx = median(col, func(r result) float64 { return r.perTx })
		m.p50 = time.Duration(median(col, func(r result) float64 { return float64(r.p50) }))
		m.p99 = time.Duration(median(col, func(r result) float64 { return float64(r.p99) }))
		m.p999 = time.Duration(median(col, func(r result) float64 { return float64(r.p999) }))
		m.max = time.Duration(median(col, func(r result) float64 { return float64(r.max) }))
		m.idle = median(col, func(r result) float64 { return r.idle })
		m.lag = int(median(col, func(r result) float64 { return float64(r.lag) }))
		m.due = int(median(col, func(r result) float64 { return float64(r.due) }))
		m.catchUp = time.Duration(median(col, func(r result) float64 { return float64(r.catchUp) }))
		if first.cpu != nil {
			m.cpu = map[string]float64{}
			for g := range first.cpu {
				m.cpu[g] = median(col, func(r result) float64 { return r.cpu[g] })
			}
		}
		m.errors, m.rssPeak = 0, 0
		m.rssPeaks = make([]int64, len(first.rssPeaks))
		for _, r := range col {
			m.errors += r.errors
			m.rssPeak = max(m.rssPeak, r.rssPeak)
			for j := range min(len(m.rssPeaks), len(r.rssPeaks)) {
				m.rssPeaks[j] = max(m.rssPeaks[j], r.rssPeaks[j])
			}
		}
		out = append(out, m)
	}
	return out
}

func median(rs []result, f func(result) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}
