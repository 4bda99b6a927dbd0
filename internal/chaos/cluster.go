package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/billing-oss/billing/internal/scratch"
)

// The binaries are built once per test binary, from the module this package is in, so a
// scenario runs the code of the checkout it is tested in (not an installed billingd).
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// BuildBinaries builds cmd/billingd and cmd/billingctl into a temporary directory, once, and
// returns that directory. RemoveBinaries deletes it (TestMain calls it). With CHAOS_RACE=1 they
// are built with the race detector (Cluster.RaceReports finds what it reports).
func BuildBinaries() (string, error) {
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "chaos-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		args := []string{"build", "-o", dir + string(filepath.Separator)}
		if os.Getenv("CHAOS_RACE") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args,
			"github.com/billing-oss/billing/cmd/billingd", "github.com/billing-oss/billing/cmd/billingctl")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1") // the race detector needs cgo; a plain build does not mind
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build billingd billingctl: %w\n%s", err, out)
		}
	})
	return binaries.dir, binaries.err
}

// RemoveBinaries deletes what BuildBinaries built.
func RemoveBinaries() {
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
}

// ClusterConfig says what a Cluster runs against.
type ClusterConfig struct {
	Processes   int    // billingd processes (default 1)
	DatabaseURL string // a URL of the Postgres server (any database): a fresh one is created on it
	RedisURL    string // the Redis every process publishes to; the cluster uses a prefix of its own
	Env         []string
	// KeepLogs writes the processes' logs to a directory that outlives the test (named in the
	// test's log), to read all of them after a failure rather than the tails printed.
	KeepLogs bool
}

// Cluster is N billingd processes sharing one fresh database and one Redis prefix, as a
// deployment of the service would: every process serves the API and runs the relay, the
// projectors and the billing scheduler, and they share the work through the database.
type Cluster struct {
	t            testing.TB
	bin, dir     string
	databaseURL  string
	dropDatabase func() error
	redisURL     string
	redisPrefix  string
	apiKey       string
	env          []string
	procs        []*process
}

// process is one billingd: its address and consumer name stay the same across restarts, as
// they would under a supervisor, so a restarted process resumes the work it held.
type process struct {
	mu      sync.Mutex
	index   int
	addr    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartCluster creates the database, starts the processes (the first migrates the database
// alone, the others then start together), creates an admin API key and waits until every
// process is ready. Everything is stopped, dropped and removed at the test's cleanup, and the
// tail of each process's log is printed if the test failed.
func StartCluster(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	bin, err := BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Processes < 1 {
		cfg.Processes = 1
	}
	tag := scratch.Tag()
	dir := t.TempDir()
	if cfg.KeepLogs {
		if dir, err = os.MkdirTemp("", "chaos-logs-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("billingd logs are kept in %s", dir)
	}
	c := &Cluster{t: t, bin: bin, dir: dir, redisURL: cfg.RedisURL, redisPrefix: "chaos:" + tag + ":", env: cfg.Env}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if c.databaseURL, c.dropDatabase, err = scratch.CreateDatabase(ctx, cfg.DatabaseURL, "chaos_"+tag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cleanup) // registered before anything else can fail, so the database goes

	for i := range cfg.Processes {
		addr, err := scratch.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, &process{index: i, addr: addr,
			logPath: filepath.Join(c.dir, fmt.Sprintf("billingd-%d.log", i))})
	}
	// Migrations take a lock, but a fresh database migrated by one process first keeps the
	// start-up logs readable and the start of the others quick.
	if err := c.start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, len(c.procs))
	for i := 1; i < len(c.procs); i++ {
		go func() { errs <- c.start(ctx, i) }()
	}
	for i := 1; i < len(c.procs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	ctl := exec.CommandContext(ctx, filepath.Join(bin, "billingctl"), "apikey", "create", "--name", "chaos", "--scope", "admin")
	ctl.Env = append(os.Environ(), "DATABASE_URL="+c.databaseURL)
	out, err := ctl.CombinedOutput()
	if err != nil {
		t.Fatalf("billingctl apikey create: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	c.apiKey = strings.TrimSpace(lines[len(lines)-1])
	return c
}

// start starts process i and waits until it is ready.
func (c *Cluster) start(ctx context.Context, i int) error {
	p := c.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.exited) {
		return fmt.Errorf("billingd %d is already running", i)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	fmt.Fprintf(logFile, "=== chaos: starting billingd %d at %s\n", i, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(c.bin, "billingd"))
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+c.databaseURL,
		"REDIS_URL="+c.redisURL,
		"REDIS_PREFIX="+c.redisPrefix,
		"HTTP_ADDR="+p.addr,
		"DEBUG_ADDR=",
		fmt.Sprintf("CONSUMER_NAME=chaos-%d", i),
		"BILLING_TEST_CLOCK=true",
		// A killed process's billing work is taken over after the lease: short, so that the
		// scenarios see the takeover within their few seconds.
		"BILLING_LEASE=2s",
		"BILLING_POLL=200ms",
		// Other packages' tests share the Postgres server: a few connections per process do.
		"DATABASE_MAX_CONNS=8",
	)
	cmd.Env = append(cmd.Env, c.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start billingd %d: %w", i, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return c.waitReady(ctx, p, 60*time.Second)
}

func (c *Cluster) waitReady(ctx context.Context, p *process, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("billingd %d exited while starting:\n%s", p.index, tail(p.logPath, 3000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := client.Get("http://" + p.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("billingd %d not ready after %s:\n%s", p.index, within, tail(p.logPath, 3000))
}

// Kill ends process i with SIGKILL, as a crash or an OOM kill would: no drain, no deferred
// clean-up, leases and advisory locks left for the database to release.
func (c *Cluster) Kill(i int) {
	p := c.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.exited) {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	appendLog(p.logPath, fmt.Sprintf("=== chaos: killed billingd %d (SIGKILL) at %s\n", i, time.Now().Format(time.RFC3339Nano)))
}

// Restart starts process i again (after Kill) on the same address and consumer name, and
// waits until it is ready.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	return c.start(ctx, i)
}

// WaitHealthy waits until every process that runs answers /readyz (Postgres and Redis reachable).
func (c *Cluster) WaitHealthy(ctx context.Context, within time.Duration) error {
	for _, p := range c.procs {
		p.mu.Lock()
		running := p.cmd != nil && !isClosed(p.exited)
		p.mu.Unlock()
		if !running {
			return fmt.Errorf("billingd %d is not running", p.index)
		}
		if err := c.waitReady(ctx, p, within); err != nil {
			return err
		}
	}
	return nil
}

// Running reports whether process i runs.
func (c *Cluster) Running(i int) bool {
	p := c.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.exited)
}

// URLs are the processes' base URLs, e.g. http://127.0.0.1:41234, in process order.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.procs))
	for i, p := range c.procs {
		urls[i] = "http://" + p.addr
	}
	return urls
}

// APIKey is the cluster's admin key.
func (c *Cluster) APIKey() string { return c.apiKey }

// DatabaseURL is the cluster's own database.
func (c *Cluster) DatabaseURL() string { return c.databaseURL }

// Target is the cluster as the checker sees it.
func (c *Cluster) Target() Target {
	t := Target{DatabaseURL: c.databaseURL, RedisURL: c.redisURL, RedisPrefix: c.redisPrefix,
		APIURLs: c.URLs(), APIKey: c.apiKey}
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "STREAM_PARTITIONS="); ok {
			t.StreamPartitions, _ = strconv.Atoi(v)
		}
	}
	return t
}

// LogTails is the end of every process's log, for a failure message.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- billingd %d (%s), last %d bytes of %s:\n%s\n", p.index, p.addr, n, p.logPath, tail(p.logPath, n))
	}
	return b.String()
}

// ErrorLines returns up to n lines at level ERROR from the processes' logs, leaving out the
// request log's lines (a 503 is logged at ERROR; the load counts those).
func (c *Cluster) ErrorLines(n int) []string {
	var lines []string
	for _, p := range c.procs {
		data, _ := os.ReadFile(p.logPath)
		for _, l := range bytes.Split(data, []byte("\n")) {
			if bytes.Contains(l, []byte(`"level":"ERROR"`)) && !bytes.Contains(l, []byte(`"msg":"request"`)) && len(lines) < n {
				lines = append(lines, fmt.Sprintf("billingd %d: %s", p.index, l))
			}
		}
	}
	return lines
}

// RaceReports returns the race detector's reports in the processes' logs (none unless built
// with CHAOS_RACE=1), each with the lines that follow its header.
func (c *Cluster) RaceReports() []string {
	var reports []string
	for _, p := range c.procs {
		data, _ := os.ReadFile(p.logPath)
		for _, report := range bytes.Split(data, []byte("WARNING: DATA RACE"))[1:] {
			reports = append(reports, fmt.Sprintf("billingd %d: DATA RACE%s", p.index, report[:min(len(report), 3000)]))
		}
	}
	return reports
}

// cleanup stops the processes (SIGTERM, then SIGKILL), drops the database and deletes the
// Redis keys under the cluster's prefix.
func (c *Cluster) cleanup() {
	if c.t.Failed() && len(c.procs) > 0 {
		c.t.Logf("billingd logs:\n%s", c.LogTails(4000))
	}
	for _, p := range c.procs {
		p.mu.Lock()
		if p.cmd != nil && !isClosed(p.exited) {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(15 * time.Second):
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		p.mu.Unlock()
	}
	if err := c.dropDatabase(); err != nil {
		c.t.Log(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scratch.DeletePrefix(ctx, c.redisURL, c.redisPrefix)
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func appendLog(path, line string) {
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		f.WriteString(line)
		f.Close()
	}
}

// tail is the last n bytes of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// ErrMissingBinary is returned when a server a scenario needs (redis-server, initdb) is not
// installed: the scenario skips, or fails when the suite is required to run (CHAOS_REQUIRED=1).
var ErrMissingBinary = errors.New("chaos: a server binary is not installed")
