package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/billing-oss/billing/internal/scratch"
	"github.com/jackc/pgx/v5"
)

// PostgresServer is a PostgreSQL cluster of the suite's own (initdb in a temporary directory,
// a free port), for the scenario that stops Postgres under load: the shared server on 5432
// serves other packages' tests at the same time and must never be restarted.
type PostgresServer struct {
	t       testing.TB
	bindir  string
	base    string // holds data/, the socket and the log
	port    int
	asUser  bool // run the server's binaries through runuser -u postgres (we are root)
	started bool
}

// StartPostgres runs initdb and starts the cluster; it is stopped and deleted at the test's
// cleanup. It returns an error wrapping ErrMissingBinary when initdb is not installed.
func StartPostgres(t testing.TB) (*PostgresServer, error) {
	t.Helper()
	bindir, err := pgBindir()
	if err != nil {
		return nil, err
	}
	port, err := scratch.FreePort()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parents are private to the user running the test, and the server
	// may have to run as another user (below).
	base, err := os.MkdirTemp("", "chaos-pg-")
	if err != nil {
		return nil, err
	}
	p := &PostgresServer{t: t, bindir: bindir, base: base, port: port, asUser: os.Geteuid() == 0}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres log (last 3000 bytes of %s):\n%s", p.logPath(), tail(p.logPath(), 3000))
		}
		if p.started {
			p.pgctl("-m", "immediate", "-w", "stop")
		}
		os.RemoveAll(base)
	})
	if p.asUser {
		// initdb and postgres refuse to run as root: they run as the postgres user, which
		// must own the directory.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(base, uid, gid); err != nil {
			return nil, err
		}
	}
	if out, err := p.run(filepath.Join(bindir, "initdb"), "-D", p.dataDir(), "--auth=trust", "-U", "postgres",
		"--no-locale", "-E", "UTF8"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// URL is a URL of the server's postgres database, as user postgres.
func (p *PostgresServer) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

func (p *PostgresServer) dataDir() string { return filepath.Join(p.base, "data") }
func (p *PostgresServer) logPath() string { return filepath.Join(p.base, "postgres.log") }

// Start starts the server and waits until it accepts connections.
func (p *PostgresServer) Start() error {
	// fsync off: the cluster lives for one test and only ever stops with the machine running
	// (immediate shutdown is a crash of the server, not of the OS, so the page cache keeps
	// what was written); it saves the suite the cost of flushing every commit on a shared disk.
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100",
		p.port, p.base)
	out, err := p.pgctl("-l", p.logPath(), "-w", "-t", "60", "-o", opts, "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, tail(p.logPath(), 2000))
	}
	p.started = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, p.URL())
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres on port %d started but does not accept connections: %w", p.port, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopImmediate stops the server the way a crash does (pg_ctl -m immediate: every backend
// killed, no checkpoint, crash recovery at the next start).
func (p *PostgresServer) StopImmediate() error {
	out, err := p.pgctl("-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	p.started = false
	return nil
}

func (p *PostgresServer) pgctl(args ...string) (string, error) {
	return p.run(filepath.Join(p.bindir, "pg_ctl"), append([]string{"-D", p.dataDir()}, args...)...)
}

// run runs one of the server's programs, as the postgres user when we are root, from / (the
// test's working directory may be closed to that user).
func (p *PostgresServer) run(name string, args ...string) (string, error) {
	var cmd *exec.Cmd
	if p.asUser {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pgBindir finds initdb and pg_ctl: pg_config's bindir, else the newest
// /usr/lib/postgresql/*/bin that has them (Debian does not put initdb on the PATH).
func pgBindir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if executable(filepath.Join(dir, "initdb")) && executable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		if executable(filepath.Join(dir, "initdb")) && executable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: initdb and pg_ctl (neither pg_config --bindir nor /usr/lib/postgresql/*/bin has them; apt-get install postgresql)", ErrMissingBinary)
}

func executable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}
