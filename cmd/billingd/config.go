package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// config is everything billingd reads from its environment, parsed once at start.
type config struct {
	DatabaseURL      string // DATABASE_URL
	DatabaseMaxConns int32  // DATABASE_MAX_CONNS
	RedisURL         string // REDIS_URL
	RedisPrefix      string // REDIS_PREFIX: prepended to every Redis key
	StreamPartitions int    // STREAM_PARTITIONS: number of event partition streams
	ConsumerName     string // CONSUMER_NAME: this process's name in the consumer groups; keep it stable
	HTTPAddr         string // HTTP_ADDR
	TestClock        bool   // BILLING_TEST_CLOCK: only "true" enables it
	CatalogFile      string // CATALOG_FILE: a plan catalog to use instead of the built-in one
	SnapshotEvery    int    // SNAPSHOT_EVERY: snapshot a subscription every N events (default 100; 0 disables)
	LogLevel         slog.Level
}

func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{
		DatabaseURL:      or(getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		DatabaseMaxConns: 20,
		RedisURL:         or(getenv("REDIS_URL"), "redis://127.0.0.1:6379/0"),
		RedisPrefix:      or(getenv("REDIS_PREFIX"), "billing:"),
		StreamPartitions: 8,
		ConsumerName:     getenv("CONSUMER_NAME"),
		HTTPAddr:         or(getenv("HTTP_ADDR"), ":8080"),
		TestClock:        getenv("BILLING_TEST_CLOCK") == "true",
		CatalogFile:      getenv("CATALOG_FILE"),
		SnapshotEvery:    eventstore.DefaultSnapshotEvery,
	}
	if v := getenv("SNAPSHOT_EVERY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return config{}, fmt.Errorf("SNAPSHOT_EVERY=%q: want 0 (no snapshots) or a positive number of events", v)
		}
		cfg.SnapshotEvery = n
	}
	if v := getenv("DATABASE_MAX_CONNS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return config{}, fmt.Errorf("DATABASE_MAX_CONNS=%q: want a positive integer", v)
		}
		cfg.DatabaseMaxConns = int32(n)
	}
	if cfg.ConsumerName == "" {
		// Host name and listen address survive restarts (and tell apart processes on one
		// host), so a restarted process first finishes the entries it had been given.
		host, err := os.Hostname()
		if err != nil {
			return config{}, fmt.Errorf("CONSUMER_NAME not set and no host name: %w", err)
		}
		cfg.ConsumerName = host + cfg.HTTPAddr
	}
	if v := getenv("STREAM_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1024 {
			return config{}, fmt.Errorf("STREAM_PARTITIONS=%q: want 1..1024", v)
		}
		cfg.StreamPartitions = n
	}
	if v := getenv("LOG_LEVEL"); v != "" {
		if err := cfg.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return config{}, fmt.Errorf("LOG_LEVEL=%q: %w", v, err)
		}
	}
	return cfg, nil
}

// catalog loads the plan catalog: CATALOG_FILE if set, else the one built into the binary.
func (c config) catalog() (*domain.Catalog, error) {
	if c.CatalogFile == "" {
		return domain.DefaultCatalog(), nil
	}
	data, err := os.ReadFile(c.CatalogFile)
	if err != nil {
		return nil, fmt.Errorf("CATALOG_FILE: %w", err)
	}
	catalog, err := domain.ParseCatalog(data)
	if err != nil {
		return nil, fmt.Errorf("CATALOG_FILE %s: %w", c.CatalogFile, err)
	}
	return catalog, nil
}

// LogValue keeps secrets in the URLs out of the logs.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", redact(c.DatabaseURL)),
		slog.Int("database_max_conns", int(c.DatabaseMaxConns)),
		slog.String("redis_url", redact(c.RedisURL)),
		slog.String("redis_prefix", c.RedisPrefix),
		slog.Int("stream_partitions", c.StreamPartitions),
		slog.String("consumer_name", c.ConsumerName),
		slog.String("http_addr", c.HTTPAddr),
		slog.Bool("test_clock", c.TestClock),
		slog.String("catalog_file", c.CatalogFile),
		slog.Int("snapshot_every", c.SnapshotEvery),
	)
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}

func or(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
