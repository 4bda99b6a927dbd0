package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/billing-oss/billing/internal/scratch"
	"github.com/jackc/pgx/v5"
)

// server is a billingd started for one run, on its own database and Redis prefix.
type server struct {
	cmd       *exec.Cmd
	url       string // http://127.0.0.1:port
	debugURL  string // where its pprof is served
	apiKey    string
	dbURL     string
	logFile   string
	exited    chan struct{}
	dropDB    func()
	cleanupFS func()
}

// startServer creates a database, starts billingd on it and creates a write key.
func startServer(ctx context.Context, o options, tag string) (*server, error) {
	servers, err := startServers(ctx, o, tag, 1)
	if err != nil {
		return nil, err
	}
	return servers[0], nil
}

// startServers creates a database and starts n billingd processes on it, sharing it and the
// Redis prefix (as the processes of one deployment do) with distinct HTTP ports and consumer
// names, and creates one write key they all accept. The first server's stop drops the
// database; stop them with stopAll.
func startServers(ctx context.Context, o options, tag string, n int) (_ []*server, err error) {
	// A database of its own: billingd migrates it on start, and nothing of an earlier run (or of
	// anyone else) is in its tables or indexes.
	dbURL, drop, err := scratch.CreateDatabase(ctx, o.databaseURL, "billing_bench_"+tag)
	if err != nil {
		return nil, err
	}
	// Dropping the database also deletes the run's Redis keys (its partition streams and dead
	// letters): the Redis server is shared, so nothing of ours stays behind.
	dropDB := func() {
		drop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		scratch.DeletePrefix(ctx, o.redisURL, "bench:"+tag+":")
	}
	var servers []*server
	defer func() {
		if err != nil {
			stopAll(servers)
			if len(servers) == 0 {
				dropDB()
			}
		}
	}()
	// One after the other: the first migrates the database before the others start.
	for i := range n {
		consumer := "bench-" + tag
		if n > 1 {
			consumer = fmt.Sprintf("bench-%s-%d", tag, i+1)
		}
		s, err := startBillingd(ctx, o, tag, dbURL, consumer)
		if s != nil {
			if i == 0 {
				s.dropDB = dropDB
			}
			servers = append(servers, s)
		}
		if err != nil {
			return nil, err
		}
	}

	ctl := exec.CommandContext(ctx, filepath.Join(o.bin, "billingctl"), "apikey", "create", "--name", "bench", "--scope", "write")
	ctl.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	out, err := ctl.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("billingctl apikey create: %w: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, s := range servers {
		s.apiKey = strings.TrimSpace(lines[len(lines)-1])
	}
	return servers, nil
}

// startBillingd starts a billingd on database dbURL with the run's Redis prefix, and waits until
// it is ready. A server that started is returned even with an error, for stop.
func startBillingd(ctx context.Context, o options, tag, dbURL, consumer string) (*server, error) {
	dir, err := os.MkdirTemp("", "benchhttp-")
	if err != nil {
		return nil, err
	}
	s := &server{dbURL: dbURL, logFile: filepath.Join(dir, "billingd.log"), exited: make(chan struct{}),
		cleanupFS: func() { os.RemoveAll(dir) }, dropDB: func() {}}
	httpAddr, err := scratch.FreeAddr()
	if err != nil {
		return s, err
	}
	debugAddr, err := scratch.FreeAddr()
	if err != nil {
		return s, err
	}
	s.url, s.debugURL = "http://"+httpAddr, "http://"+debugAddr
	env := append(os.Environ(),
		"DATABASE_URL="+s.dbURL, "REDIS_URL="+o.redisURL, "REDIS_PREFIX=bench:"+tag+":",
		"HTTP_ADDR="+httpAddr, "DEBUG_ADDR="+debugAddr, "CONSUMER_NAME="+consumer, "LOG_LEVEL="+o.logLevel)
	env = append(env, o.env...)
	logFile, err := os.Create(s.logFile)
	if err != nil {
		return s, err
	}
	defer logFile.Close() // the child has its own descriptor
	s.cmd = exec.Command(filepath.Join(o.bin, "billingd"))
	s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = env, logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return s, fmt.Errorf("start billingd (make build puts it in .data/bin): %w", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	return s, s.waitReady(ctx)
}

// stopAll stops servers started together, the first (which drops the database) last.
func stopAll(servers []*server) {
	for i := len(servers) - 1; i >= 0; i-- {
		servers[i].stop()
	}
}

func (s *server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("billingd exited: %s", s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("billingd not ready after a minute: %s", s.logTail())
}

// settle waits until billingd has answered every request it was sent (a client that timed out
// leaves its request running), its relay and projectors have caught up with the store, and its
// billing scheduler has done the work that is due (the first invoices' payments): the next phase
// then does not pay for the backlog of the last one.
func (s *server) settle(ctx context.Context) {
	deadline := time.Now().Add(5 * time.Minute)
	last := -1.0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		requests, lag, err := s.progress()
		if err == nil && lag == 0 && requests == last && s.billingDue(ctx) == 0 {
			return
		}
		last = requests
		time.Sleep(500 * time.Millisecond)
	}
}

// billingDue counts the billing_schedule rows due now (-1 if it cannot tell).
func (s *server) billingDue(ctx context.Context) int {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	n := -1
	conn.QueryRow(ctx, `SELECT count(*) FROM billing_schedule WHERE due_at <= now()`).Scan(&n)
	return n
}

// progress reads from /metrics the commands (POST) answered so far and the relay's and projectors' lag.
func (s *server) progress() (requests, lag float64, err error) {
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		var sum *float64
		switch {
		case strings.HasPrefix(line, "billing_http_requests_total{") && strings.Contains(line, `method="POST"`):
			sum = &requests
		case strings.HasPrefix(line, "billing_relay_lag_events"), strings.HasPrefix(line, "billing_projector_lag_events{"):
			sum = &lag
		default:
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, 0, err
		}
		*sum += v
	}
	return requests, lag, sc.Err()
}

// dbNow is the database's clock, which stamps recorded_at.
func (s *server) dbNow(ctx context.Context) time.Time {
	var now time.Time
	if conn, err := pgx.Connect(ctx, s.dbURL); err == nil {
		conn.QueryRow(ctx, `SELECT now()`).Scan(&now)
		conn.Close(ctx)
	}
	return now
}

// createsPerTransaction is the mean number of subscriptions created per transaction that
// created any since the database time since: how well group commit batched them (1 without).
func (s *server) createsPerTransaction(ctx context.Context, since time.Time) float64 {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var perTx float64
	conn.QueryRow(ctx, `SELECT coalesce(count(*)::float8 / nullif(count(DISTINCT transaction_id), 0), 0) FROM events
		WHERE type = 'subscription.created' AND recorded_at >= $1`, since).Scan(&perTx)
	return perTx
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux ≥ 4.0), so that each phase
// reports its own peak rather than the highest of the run so far.
func (s *server) resetPeakRSS() {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0)
}

// rss reads the server's resident set from /proc: the peak so far (VmHWM) and now (VmRSS), in kB.
func (s *server) rss() (peak, now int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		field, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch field {
		case "VmHWM":
			peak = kb
		case "VmRSS":
			now = kb
		}
	}
	return peak, now
}

// profile writes a CPU profile of the server over the next d to path.
func (s *server) profile(ctx context.Context, d time.Duration, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET",
		fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.debugURL, int(d.Seconds())), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// stop ends billingd (SIGTERM: it drains and stops its workers), drops the database and removes
// the log.
func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	s.dropDB()
	s.cleanupFS()
}

// logTail is the end of billingd's log, for an error message.
func (s *server) logTail() string {
	data, _ := os.ReadFile(s.logFile)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// errorLines returns up to n log lines at level ERROR, to explain failed requests.
func (s *server) errorLines(n int) []string {
	f, err := os.Open(s.logFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(lines) < n {
		if l := sc.Text(); strings.Contains(l, `"level":"ERROR"`) {
			lines = append(lines, l)
		}
	}
	return lines
}
