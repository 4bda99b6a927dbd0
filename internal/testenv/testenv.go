// Package testenv gives integration tests real PostgreSQL and Redis servers: each test gets its
// own freshly migrated database and its own Redis key prefix, so tests run in parallel.
//
// Servers are found in this order: TEST_DATABASE_URL / TEST_REDIS_URL; else servers listening on
// localhost's default ports; else containers started with testcontainers (needs Docker).
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/migrations"
)

const (
	localPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	localRedis    = "redis://127.0.0.1:6379/0"
)

var (
	serverOnce  sync.Once
	serverURL   string // admin URL of the Postgres server
	templateDB  string // migrated template database, cloned per test
	postgresErr error

	redisOnce sync.Once
	redisURL  string
	redisErr  error
)

// DatabaseURL creates a fresh, migrated database for this test, drops it when the test ends, and
// returns its URL.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	serverOnce.Do(func() { serverURL, templateDB, postgresErr = preparePostgres() })
	if postgresErr != nil {
		t.Fatalf("postgres for tests: %v", postgresErr)
	}
	ctx := context.Background()
	name := "billing_test_" + randomHex(8)
	admin := connect(t, serverURL)
	defer admin.Close(ctx)
	_, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, templateDB))
	if isMissingDatabase(err) {
		// Another checkout's tests pruned our template (see preparePostgres): build it again.
		if _, _, err = preparePostgres(); err == nil {
			_, err = admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, templateDB))
		}
	}
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		admin := connect(t, serverURL)
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return withDatabase(serverURL, name)
}

// Postgres returns a pool on a fresh, migrated database for this test, with room for the
// concurrency tests' writers and readers at once (40 connections).
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return PostgresWithConns(t, 40)
}

// PostgresWithConns is Postgres with a pool of at most maxConns connections. A pool keeps the
// connections it opened until the test ends, and the test server (max_connections 100 by
// default) serves two test binaries at once under go test ./..., so tests that need no more
// should ask for fewer.
func PostgresWithConns(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := eventstore.PoolConfig(DatabaseURL(t))
	if err != nil {
		t.Fatalf("parse test database url: %v", err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}
	t.Cleanup(pool.Close) // registered after the drop, so it runs before it
	return pool
}

// Redis returns a client and a key prefix unique to this test; the test's keys are deleted when
// it ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	redisOnce.Do(func() { redisURL, redisErr = findRedis() })
	if redisErr != nil {
		t.Fatalf("redis for tests: %v", redisErr)
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	client := redis.NewClient(opts)
	prefix := "test:" + randomHex(6) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	return client, prefix
}

// RedisURL returns the URL of the Redis server tests use.
func RedisURL(t testing.TB) string {
	t.Helper()
	Redis(t)
	return redisURL
}

// preparePostgres finds a server and makes sure it holds a template database migrated to the
// current schema. The template's name carries a hash of the migration files, so every test
// process of every run shares it until the schema changes.
func preparePostgres() (adminURL, template string, err error) {
	adminURL, err = findPostgres()
	if err != nil {
		return "", "", err
	}
	template = "billing_tmpl_" + migrationsHash()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", "", err
	}
	defer conn.Close(ctx)
	// Serialise template creation across the test processes `go test ./...` runs in parallel.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext('billing test template'))`); err != nil {
		return "", "", err
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('billing test template'))`)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT exists(SELECT 1 FROM pg_database WHERE datname = $1)`, template).Scan(&exists); err != nil {
		return "", "", err
	}
	if exists {
		return adminURL, template, nil
	}
	// Build under a temporary name and rename when complete, so a crash never leaves a
	// half-migrated template behind under the real name.
	building := template + "_building"
	for _, stmt := range []string{
		`DROP DATABASE IF EXISTS ` + building + ` WITH (FORCE)`,
		`CREATE DATABASE ` + building,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return "", "", err
		}
	}
	if err := migrations.Up(withDatabase(adminURL, building)); err != nil {
		return "", "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+template); err != nil {
		return "", "", err
	}
	// Templates of older schemas are dead weight now, but other checkouts (branches) on the same
	// server may still use theirs: keep the few most recent.
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'billing_tmpl_%' AND datname <> $1
		ORDER BY oid DESC OFFSET 7`, template)
	if err != nil {
		return "", "", err
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", "", err
	}
	for _, name := range stale {
		conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	}
	return adminURL, template, nil
}

func isMissingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}

func findPostgres() (string, error) {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, localPostgres); err == nil {
		conn.Close(ctx)
		return localPostgres, nil
	}
	ctx = context.Background()
	c, err := tcpostgres.Run(ctx, "postgres:15-alpine",
		tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies())
	if err != nil {
		return "", fmt.Errorf("no TEST_DATABASE_URL, no server on 127.0.0.1:5432, and testcontainers failed: %w", err)
	}
	return c.ConnectionString(ctx, "sslmode=disable")
}

func findRedis() (string, error) {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	opts, _ := redis.ParseURL(localRedis)
	client := redis.NewClient(opts)
	defer client.Close()
	if client.Ping(ctx).Err() == nil {
		return localRedis, nil
	}
	ctx = context.Background()
	c, err := tcredis.Run(ctx, "redis:7-alpine", testcontainers.WithCmd("redis-server", "--save", "", "--appendonly", "no"))
	if err != nil {
		return "", fmt.Errorf("no TEST_REDIS_URL, no server on 127.0.0.1:6379, and testcontainers failed: %w", err)
	}
	return c.ConnectionString(ctx)
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	return conn
}

// withDatabase returns the URL with its database name replaced.
func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(fmt.Sprintf("testenv: bad postgres url: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

func migrationsHash() string {
	h := sha256.New()
	fs.WalkDir(migrations.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sql") {
			return err
		}
		b, err := fs.ReadFile(migrations.Files, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
