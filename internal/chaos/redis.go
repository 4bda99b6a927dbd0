package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/billing-oss/billing/internal/scratch"
	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server of the suite's own, on a free port, for the scenarios that
// empty or kill Redis: the shared Redis on 6379 serves other packages' tests at the same time
// and must never be flushed or restarted.
type RedisServer struct {
	t       testing.TB
	port    int
	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartRedis starts a redis-server without persistence (so a restart starts it empty) and
// stops it at the test's cleanup. It returns an error wrapping ErrMissingBinary when
// redis-server is not installed.
func StartRedis(t testing.TB) (*RedisServer, error) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("%w: redis-server (apt-get install redis-server): %v", ErrMissingBinary, err)
	}
	port, err := scratch.FreePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	r := &RedisServer{t: t, port: port, dir: dir, logPath: filepath.Join(dir, "redis.log")}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("redis-server log (last 2000 bytes of %s):\n%s", r.logPath, tail(r.logPath, 2000))
		}
		r.kill()
	})
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// URL is the server's redis:// URL.
func (r *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *RedisServer) start() error {
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", r.logPath)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if r.ping(ctx) == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited on start:\n%s", tail(r.logPath, 2000))
		case <-ctx.Done():
			return fmt.Errorf("redis-server on port %d does not answer PING:\n%s", r.port, tail(r.logPath, 2000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *RedisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port), MaxRetries: -1})
}

func (r *RedisServer) ping(ctx context.Context) error {
	c := r.client()
	defer c.Close()
	return c.Ping(ctx).Err()
}

// FlushAll empties the server: streams, consumer groups, everything the relay and the
// projectors keep there.
func (r *RedisServer) FlushAll(ctx context.Context) error {
	c := r.client()
	defer c.Close()
	return c.FlushAll(ctx).Err()
}

// Restart kills the server (SIGKILL) and starts it again on the same port, empty: what a
// Redis without persistence looks like after a crash.
func (r *RedisServer) Restart() error {
	r.kill()
	return r.start()
}

func (r *RedisServer) kill() {
	if r.cmd == nil || isClosed(r.exited) {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
}
