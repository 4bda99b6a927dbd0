package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// startForCheck is a minimal stand-in for the fault suite's cluster (cluster.go, built
// elsewhere, replaces it): it builds billingd and billingctl once per test binary, creates a
// fresh database checker_<random> (billingd migrates it), starts n billingd processes on it with
// the test clock and a Redis prefix of their own, and creates an admin key. Everything is
// stopped and dropped when the test ends.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		defer func() { t.Logf("built billingd and billingctl in %s", time.Since(start).Round(time.Millisecond)) }()
		if binDir, buildErr = os.MkdirTemp("", "chaos-bin-"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./cmd/billingd", "./cmd/billingctl")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// service is a running set of billingd processes and its Target.
type service struct {
	t      *testing.T
	target Target
	client *http.Client
}

func startForCheck(t *testing.T, processes int) *service {
	t.Helper()
	ctx := context.Background()
	bin := binaries(t)
	serverURL := envOr("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	redisURL := envOr("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

	name := "checker_" + randomHex(6)
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		t.Fatalf("create database: %v", err)
	}
	admin.Close(ctx)
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dbURL := u.String()

	prefix := "checker:" + randomHex(6) + ":"
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered before the processes' cleanup, so it runs after they stopped
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})

	s := &service{t: t, client: &http.Client{Timeout: 15 * time.Second},
		target: Target{DatabaseURL: dbURL, RedisURL: redisURL, RedisPrefix: prefix, StreamPartitions: 4}}
	for i := range processes {
		addr := freeAddr(t)
		cmd := exec.Command(filepath.Join(bin, "billingd"))
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "REDIS_URL="+redisURL, "REDIS_PREFIX="+prefix,
			"STREAM_PARTITIONS=4", "HTTP_ADDR="+addr, "LOG_LEVEL=error", fmt.Sprintf("CONSUMER_NAME=checker-%d", i),
			"BILLING_TEST_CLOCK=true", "BILLING_POLL=100ms")
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start billingd: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			if t.Failed() && logs.Len() > 0 {
				t.Logf("billingd %d said:\n%s", i, lastLines(logs.String(), 30))
			}
		})
		base := "http://" + addr
		s.waitReady(base, done)
		s.target.APIURLs = append(s.target.APIURLs, base)
	}

	cmd := exec.Command(filepath.Join(bin, "billingctl"), "apikey", "create", "--name", "t", "--scope", "admin")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("billingctl apikey create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	s.target.APIKey = strings.TrimSpace(lines[len(lines)-1])
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *service) waitReady(base string, exited <-chan struct{}) {
	s.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			s.t.Fatalf("billingd at %s exited while starting", base)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	s.t.Fatalf("billingd at %s not ready after 30s", base)
}

// do sends a request to the i-th process and returns the status and body; an idempotency key
// is sent when key is not empty.
func (s *service) do(i int, method, path, key string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.target.APIURLs[i%len(s.target.APIURLs)]+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.target.APIKey)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// settle waits until the relay and every projector have caught up and no upgrade saga is
// still running.
func (s *service) settle() {
	s.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		status, body, err := s.do(0, http.MethodGet, "/v1/pipeline/status", "", nil)
		if err != nil || status != http.StatusOK {
			continue
		}
		var p struct {
			RelayLag   int64 `json:"relay_lag_events"`
			Projectors []struct {
				Lag     int64 `json:"lag_events"`
				Pending int64 `json:"pending_entries"`
			} `json:"projectors"`
		}
		if json.Unmarshal(body, &p) != nil || p.RelayLag != 0 || len(p.Projectors) == 0 {
			continue
		}
		settled := true
		for _, pr := range p.Projectors {
			settled = settled && pr.Lag == 0 && pr.Pending == 0
		}
		if settled {
			return
		}
	}
	s.t.Fatal("the pipeline did not settle within 30s")
}
