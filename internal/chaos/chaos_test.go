package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// The scenarios run one after another (no t.Parallel): each drives a few billingd processes
// as hard as a 2-core machine allows, and their timings are what RELIABILITY.md quotes.
//
// CHAOS_DURATION sets each scenario's load (default 5s, the short form `make test` runs;
// `make chaos` runs 60s). CHAOS_REQUIRED=1 turns a missing redis-server or initdb into a
// failure instead of a skip. CHAOS_KEEP_LOGS=1 keeps the billingd logs (their directory is
// named in the test's log). CHAOS_RACE=1 builds billingd with the race detector and fails a
// scenario on any race it reports (the load is then about half as heavy on 2 cores).

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBinaries()
	os.Exit(code)
}

func keepLogs() bool { return os.Getenv("CHAOS_KEEP_LOGS") == "1" }

func chaosDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("CHAOS_DURATION")
	if v == "" {
		return 5 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		t.Fatalf("CHAOS_DURATION=%q: want a duration of at least 1s, such as 60s", v)
	}
	return d
}

// needServer skips (or, with CHAOS_REQUIRED=1, fails) a scenario whose server is not
// installed, and fails it on any other error.
func needServer(t *testing.T, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ErrMissingBinary) && os.Getenv("CHAOS_REQUIRED") == "1":
		t.Fatalf("CHAOS_REQUIRED=1 and the scenario cannot run: %v", err)
	case errors.Is(err, ErrMissingBinary):
		t.Skipf("%v (CHAOS_REQUIRED=1 makes this a failure)", err)
	default:
		t.Fatal(err)
	}
}

// sharedServers are the Postgres and Redis every test package uses: the scenarios that do not
// harm them get a database and a key prefix of their own there.
func sharedServers() (databaseURL, redisURL string) {
	databaseURL = firstSet(os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"),
		"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	redisURL = firstSet(os.Getenv("TEST_REDIS_URL"), os.Getenv("REDIS_URL"), "redis://127.0.0.1:6379/0")
	return databaseURL, redisURL
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// sleepUntil sleeps until t (at once if it has passed).
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// between is a random duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// finish stops the load, waits for the cluster to settle, asserts what every scenario
// asserts (no 5xx but problem+json 503s, every key answered, no dead letter, the checker's
// verdict) and logs the one-line summary.
func finish(t *testing.T, c *Cluster, load *Load, target Target, name, extra string) {
	t.Helper()
	stopped := time.Now()
	load.Stop(time.Minute)
	drained := time.Since(stopped)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatalf("after the load: %v", err)
	}
	settled, err := c.Settle(ctx, 90*time.Second)
	if err != nil {
		t.Errorf("the cluster did not settle: %v", err)
	}
	st := load.Stats()
	acks := load.Acks()
	t.Logf("chaos %s: %s; %d ops, %d requests, %d acks (%d creates), %d retries, %d transport errors (%d timeouts), "+
		"%d 503s, %d other 5xx, %d key-in-flight 409s, %d unresolved, %d clock moves; final statuses %s (refusals: %s); "+
		"drained in %s, settled in %s (%s; waited last for: %s)",
		name, extra, st.Operations, st.Requests, len(acks), st.Creates, st.Retries, st.TransportErrors, st.Timeouts,
		st.Unavailable, len(st.ServerErrors), st.InFlight409, st.Unresolved, st.ClockMoves, statusCounts(st.Final), refusalCounts(st.Refusals),
		drained.Round(time.Millisecond), settled.Took.Round(time.Millisecond), settled.Pipeline, cmp.Or(settled.Waited, "nothing"))

	for i, a := range st.ServerErrors {
		if i == 10 {
			t.Errorf("... and %d more 5xx", len(st.ServerErrors)-i)
			break
		}
		t.Errorf("5xx other than 503 (a violation): %s", a)
	}
	for i, a := range st.UnavailableNotProblem {
		if i == 10 {
			t.Errorf("... and %d more", len(st.UnavailableNotProblem)-i)
			break
		}
		t.Errorf("503 that is not application/problem+json: %s", a)
	}
	for _, a := range st.ClockRefused {
		t.Errorf("a test clock move forward was refused: %s", a)
	}
	if st.Unresolved > 0 {
		t.Errorf("%d requests never got a definitive answer, retried for up to a minute after the load stopped", st.Unresolved)
	}
	if n := settled.Pipeline.DeadLetters(); n > 0 {
		t.Errorf("%d events dead-lettered by the projectors: %s", n, settled.Pipeline)
	}
	if st.Creates == 0 || len(acks) < 10 {
		t.Errorf("the load got %d acks (%d creates): the scenario proved nothing", len(acks), st.Creates)
	}
	// The load only changes subscriptions it was told exist: a 404 means an acknowledged
	// create is gone, unless the create's own answer came after it.
	for _, a := range load.Answers() {
		if a.Status == 404 {
			t.Errorf("404 for a subscription the load saw created: %s", a)
		}
	}
	for _, r := range c.RaceReports() {
		t.Errorf("the race detector reported (CHAOS_RACE=1): %s", r)
	}
	if lines := c.ErrorLines(10); len(lines) > 0 && t.Failed() {
		t.Logf("ERROR lines in the billingd logs (the first %d):\n%s", len(lines), strings.Join(lines, "\n"))
	}

	violations, err := Check(ctx, target, acks)
	if err != nil {
		t.Errorf("Check: %v", err)
	}
	for _, v := range violations {
		t.Errorf("violation %s: %s", v.Check, v.Detail)
	}
}

func statusCounts(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for code := range m {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	parts := make([]string, len(codes))
	for i, code := range codes {
		parts[i] = fmt.Sprintf("%d×%d", m[code], code)
	}
	return strings.Join(parts, " ")
}

func refusalCounts(m map[string]int) string {
	kinds := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d×%s", m[k], k)
	}
	return strings.Join(parts, ", ")
}

func durations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(10 * time.Millisecond).String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestChaosKillOneOfThree: three billingd on one database; every 1-3 s one of them, at
// random, is killed with SIGKILL and started again after a short pause. Clients retry with the
// same key on the next process. Nothing acknowledged may be lost or applied twice, and no
// request may get a 500.
func TestChaosKillOneOfThree(t *testing.T) {
	d := chaosDuration(t)
	db, rdb := sharedServers()
	c := StartCluster(t, ClusterConfig{Processes: 3, DatabaseURL: db, RedisURL: rdb, KeepLogs: keepLogs()})
	rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
	load := StartLoad(LoadConfig{URLs: c.URLs(), APIKey: c.APIKey()})
	defer load.Stop(0)

	ctx := context.Background()
	end := time.Now().Add(d)
	var kills int
	var restarts []time.Duration
	for {
		wait := between(rng, time.Second, 3*time.Second)
		if time.Now().Add(wait).After(end) {
			break
		}
		time.Sleep(wait)
		i := rng.IntN(3)
		c.Kill(i)
		kills++
		time.Sleep(between(rng, 200*time.Millisecond, 800*time.Millisecond))
		started := time.Now()
		if err := c.Restart(ctx, i); err != nil {
			t.Fatalf("restart billingd %d: %v", i, err)
		}
		restarts = append(restarts, time.Since(started))
	}
	sleepUntil(end)
	if kills == 0 {
		t.Fatalf("no process was killed in %s: the scenario proved nothing", d)
	}
	finish(t, c, load, c.Target(), "kill-one-of-three",
		fmt.Sprintf("%s of load, %d kills, restarts took %s", d, kills, durations(restarts)))
}

// TestChaosRedisEmptied: two billingd on a Redis of the suite's own, which is emptied with
// FLUSHALL once under load, then killed and started again empty. The relay and the
// projectors must notice and catch the read models up from the store; no request may get a
// 500.
func TestChaosRedisEmptied(t *testing.T) {
	d := chaosDuration(t)
	r, err := StartRedis(t)
	needServer(t, err)
	db, _ := sharedServers()
	c := StartCluster(t, ClusterConfig{Processes: 2, DatabaseURL: db, RedisURL: r.URL(), KeepLogs: keepLogs()})
	rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
	start := time.Now()
	load := StartLoad(LoadConfig{URLs: c.URLs(), APIKey: c.APIKey()})
	defer load.Stop(0)

	ctx := context.Background()
	sleepUntil(start.Add(between(rng, d/5, d*2/5)))
	if err := r.FlushAll(ctx); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	flushedAt := time.Since(start)

	sleepUntil(start.Add(between(rng, d/2, d*7/10)))
	killedAt := time.Since(start)
	if err := r.Restart(); err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
	target := c.Target()
	target.RedisEmptiedAt = time.Now() // the second emptying: published before it may be gone
	readyAgain := time.Now()
	if err := c.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatalf("after Redis came back: %v", err)
	}
	ready := time.Since(readyAgain)
	sleepUntil(start.Add(d))
	finish(t, c, load, target, "redis-emptied",
		fmt.Sprintf("%s of load, FLUSHALL at %s, killed and restarted empty at %s, processes ready %s later",
			d, flushedAt.Round(time.Millisecond), killedAt.Round(time.Millisecond), ready.Round(time.Millisecond)))
}

// TestChaosPostgresRestarted: two billingd on a Postgres cluster of the suite's own, which is
// stopped with -m immediate under load and started again 2-3 s later. During the outage every
// error must be a 503 problem (retry with the same key), never a 500; afterwards the same
// processes, not restarted, must serve again within 30 s; nothing acknowledged may be lost.
func TestChaosPostgresRestarted(t *testing.T) {
	d := chaosDuration(t)
	pg, err := StartPostgres(t)
	needServer(t, err)
	_, rdb := sharedServers()
	c := StartCluster(t, ClusterConfig{Processes: 2, DatabaseURL: pg.URL(), RedisURL: rdb, KeepLogs: keepLogs()})
	rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
	start := time.Now()
	load := StartLoad(LoadConfig{URLs: c.URLs(), APIKey: c.APIKey()})
	defer load.Stop(0)

	ctx := context.Background()
	sleepUntil(start.Add(between(rng, d/5, d*2/5)))
	down := time.Now()
	if err := pg.StopImmediate(); err != nil {
		t.Fatal(err)
	}
	outage := between(rng, 2*time.Second, 3*time.Second)
	time.Sleep(outage)
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()

	// The same processes must serve writes again: each is probed with a create until one is
	// acknowledged.
	recovered := make([]time.Duration, len(c.URLs()))
	for i, url := range c.URLs() {
		deadline := up.Add(30 * time.Second)
		for {
			a, err := load.Probe(ctx, url)
			if err == nil && a.Status >= 200 && a.Status <= 299 {
				recovered[i] = time.Since(up)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("billingd %d does not serve 30 s after Postgres came back; last answer: %s (%v)", i, a, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	sleepUntil(start.Add(d))

	// What the clients saw while Postgres was down.
	var n503, other int
	var samples []string
	for _, a := range load.Answers() {
		if a.At.Before(down) || a.At.After(up) {
			continue
		}
		switch {
		case a.Status == 503:
			n503++
			if len(samples) < 3 {
				samples = append(samples, a.String())
			}
		case a.Status == 0 || a.Status >= 500:
			other++
			t.Errorf("during the outage, not a 503: %s", a)
		}
	}
	if n503 == 0 {
		t.Errorf("no 503 during the %s outage: the scenario proved nothing", outage.Round(time.Millisecond))
	}
	if st := load.Stats(); st.TransportErrors > 0 {
		t.Errorf("%d requests got no HTTP answer, though billingd kept running", st.TransportErrors)
	}
	t.Logf("503 samples during the outage:\n%s", strings.Join(samples, "\n"))
	finish(t, c, load, c.Target(), "postgres-restarted",
		fmt.Sprintf("%s of load, Postgres down %s at %s, %d 503s during the outage, processes serving again %s after the restart",
			d, outage.Round(time.Millisecond), down.Sub(start).Round(time.Millisecond), n503, durations(recovered)))
}

// TestChaosFaultsTogether: faults that overlap, on two billingd with a Postgres and a Redis of
// the suite's own. Redis is emptied with FLUSHALL and, while the relay and the projectors are
// catching up from the store, one process is killed with SIGKILL and started again; later
// Postgres is stopped with -m immediate and, during the outage, the other process is killed,
// to be started again once Postgres is back (billingd runs its migrations at start, so it
// cannot start without it). Recovery from one fault must not depend on being spared another.
func TestChaosFaultsTogether(t *testing.T) {
	d := chaosDuration(t)
	pg, err := StartPostgres(t)
	needServer(t, err)
	r, err := StartRedis(t)
	needServer(t, err)
	c := StartCluster(t, ClusterConfig{Processes: 2, DatabaseURL: pg.URL(), RedisURL: r.URL(), KeepLogs: keepLogs()})
	rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
	start := time.Now()
	load := StartLoad(LoadConfig{URLs: c.URLs(), APIKey: c.APIKey()})
	defer load.Stop(0)
	ctx := context.Background()

	sleepUntil(start.Add(between(rng, d/5, d*2/5)))
	if err := r.FlushAll(ctx); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	flushedAt := time.Since(start)
	target := c.Target()
	target.RedisEmptiedAt = time.Now() // published before it may be gone
	time.Sleep(between(rng, 0, 300*time.Millisecond))
	c.Kill(0)
	time.Sleep(between(rng, 200*time.Millisecond, 800*time.Millisecond))
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatalf("restart billingd 0 after the FLUSHALL: %v", err)
	}

	sleepUntil(start.Add(between(rng, d/2, d*7/10)))
	downAt := time.Since(start)
	if err := pg.StopImmediate(); err != nil {
		t.Fatal(err)
	}
	outage := between(rng, 2*time.Second, 3*time.Second)
	time.Sleep(between(rng, outage/4, outage*3/4))
	c.Kill(1)
	sleepUntil(start.Add(downAt + outage))
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatalf("restart billingd 1 after the outage: %v", err)
	}
	sleepUntil(start.Add(d))
	finish(t, c, load, target, "faults-together",
		fmt.Sprintf("%s of load, FLUSHALL at %s with billingd 0 killed just after, Postgres down %s at %s with billingd 1 killed during it",
			d, flushedAt.Round(time.Millisecond), outage.Round(time.Millisecond), downAt.Round(time.Millisecond)))
}
