package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// vegetaModule is the load generator, installed with go install when it is not on the PATH.
const vegetaModule = "github.com/tsenart/vegeta/v12@v12.13.0"

// findVegeta returns vegeta's path: on the PATH, else in Go's bin directory, else installed there.
func findVegeta(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("vegeta"); err == nil {
		return p, nil
	}
	// `go env GOBIN GOPATH` prints an empty first line when GOBIN is unset; keep the lines apart.
	out, err := exec.CommandContext(ctx, "go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	vars := strings.SplitN(strings.TrimRight(string(out), "\n"), "\n", 2)
	bin := strings.TrimSpace(vars[0])
	if bin == "" && len(vars) > 1 {
		bin = filepath.Join(strings.Split(strings.TrimSpace(vars[1]), string(os.PathListSeparator))[0], "bin")
	}
	path := filepath.Join(bin, "vegeta")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Fprintf(os.Stderr, "benchhttp: installing %s (go install)\n", vegetaModule)
	install := exec.CommandContext(ctx, "go", "install", vegetaModule)
	install.Stdout, install.Stderr = os.Stderr, os.Stderr
	if err := install.Run(); err != nil {
		return "", fmt.Errorf("go install %s: %w", vegetaModule, err)
	}
	return path, nil
}

// target is a request in vegeta's JSON target format (the body is base64, as []byte marshals).
type target struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Body   []byte              `json:"body,omitempty"`
	Header map[string][]string `json:"header"`
}

// hit is one of vegeta's results, as `vegeta encode -to json` writes it.
type hit struct {
	Code      int       `json:"code"`
	Latency   int64     `json:"latency"` // ns
	Timestamp time.Time `json:"timestamp"`
	Error     string    `json:"error"`
	Body      []byte    `json:"body"`
}

// noTargets is the error vegeta records, instead of a request, once its lazy targets run out.
const noTargets = "no targets to attack"

// attack runs vegeta for d, at rate requests per second or, with rate 0, as fast as workers
// workers can send them, one at a time each. next gives the i-th request; when it reports false
// the attack ends early. It returns the answers and the CPU time vegeta used to send them.
func attack(ctx context.Context, vegeta string, rate, workers int, d time.Duration,
	next func(i int) (target, bool)) ([]hit, time.Duration, error) {
	results, err := os.CreateTemp("", "benchhttp-results-*.bin")
	if err != nil {
		return nil, 0, err
	}
	results.Close()
	file := results.Name()
	defer os.Remove(file)
	args := []string{"attack", "-lazy", "-format=json", "-duration=" + d.String(), "-timeout=30s", "-output=" + file}
	if rate > 0 {
		args = append(args, "-rate="+strconv.Itoa(rate)+"/s")
	} else {
		w := strconv.Itoa(workers)
		args = append(args, "-rate=0", "-workers="+w, "-max-workers="+w)
	}
	cmd := exec.CommandContext(ctx, vegeta, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	// vegeta reads targets as it needs them; the write fails once it has exited.
	go func() {
		defer stdin.Close()
		enc := json.NewEncoder(stdin)
		for i := 0; ; i++ {
			t, ok := next(i)
			if !ok || enc.Encode(t) != nil {
				return
			}
		}
	}()
	if err := cmd.Wait(); err != nil {
		return nil, 0, fmt.Errorf("vegeta attack: %w: %s", err, stderr.String())
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

	enc := exec.CommandContext(ctx, vegeta, "encode", "-to=json", file)
	out, err := enc.StdoutPipe()
	if err != nil {
		return nil, 0, err
	}
	if err := enc.Start(); err != nil {
		return nil, 0, err
	}
	var hits []hit
	dec := json.NewDecoder(out)
	for {
		var h hit
		if err := dec.Decode(&h); err == io.EOF {
			break
		} else if err != nil {
			return nil, 0, fmt.Errorf("vegeta encode: %w", err)
		}
		if h.Error != noTargets {
			hits = append(hits, h)
		}
	}
	if err := enc.Wait(); err != nil {
		return nil, 0, fmt.Errorf("vegeta encode: %w", err)
	}
	return hits, cpu, nil
}

// result is one phase's figures.
type result struct {
	name       string // e.g. "create", "bare INSERT"
	rate       int    // offered per second; 0 at saturation
	workers    int    // at saturation
	requests   int
	errors     int         // answers other than the expected status, and transport errors
	statuses   map[int]int // every answer's status (0: transport error)
	sample     string      // one transport error, if any
	throughput float64     // expected answers per second
	ratio      float64     // at saturation: throughput ÷ the bare INSERT rate of the same run
	p50        time.Duration
	p99        time.Duration
	p999       time.Duration
	max        time.Duration
	rssPeak    int64              // kB, billingd's peak RSS (VmHWM) over the phase
	perTx      float64            // creates: subscriptions created per transaction
	processes  int                // -processes: billingd processes serving the phase
	rssPeaks   []int64            // -processes: each process's peak RSS, kB
	workerSet  string             // -breakdown: billingd's WORKERS
	cpu        map[string]float64 // -breakdown: CPU ms per success by cpuGroups, and "all" for their sum
	idle       float64            // -breakdown: the machine's idle share over the phase
	lag, due   int                // -breakdown: the relay's and projectors' lag, summed, and payments due, at the end
	catchUp    time.Duration      // -breakdown: how long the work left took to finish (the figures include it)
}

// summarize computes a phase's figures from its hits; want are the statuses of a success.
func summarize(name string, rate, workers int, hits []hit, want []int) result {
	r := result{name: name, rate: rate, workers: workers, requests: len(hits), statuses: map[int]int{}}
	if len(hits) == 0 {
		return r
	}
	latencies := make([]time.Duration, len(hits))
	first, last := hits[0].Timestamp, hits[0].Timestamp
	ok := 0
	for i, h := range hits {
		latencies[i] = time.Duration(h.Latency)
		r.statuses[h.Code]++
		if h.Error != "" && r.sample == "" {
			r.sample = h.Error
		}
		if slices.Contains(want, h.Code) && h.Error == "" {
			ok++
		}
		if h.Timestamp.Before(first) {
			first = h.Timestamp
		}
		if end := h.Timestamp.Add(time.Duration(h.Latency)); end.After(last) {
			last = end
		}
	}
	r.errors = len(hits) - ok
	// Like vegeta's own throughput: successes over the time from the first request to the last
	// answer.
	if elapsed := last.Sub(first); elapsed > 0 {
		r.throughput = float64(ok) / elapsed.Seconds()
	}
	slices.Sort(latencies)
	r.p50, r.p99, r.p999 = percentile(latencies, 50), percentile(latencies, 99), percentile(latencies, 99.9)
	r.max = latencies[len(latencies)-1]
	return r
}

// percentile of sorted latencies, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
