package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/billing"
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
	DebugAddr        string // DEBUG_ADDR: where to serve net/http/pprof; off when empty
	TestClock        bool   // BILLING_TEST_CLOCK: only "true" enables it
	CatalogFile      string // CATALOG_FILE: a plan catalog to use instead of the built-in one
	SnapshotEvery    int    // SNAPSHOT_EVERY: snapshot a subscription every N events (default 100; 0 disables)
	// GROUP_COMMIT_MAX_BATCH (1 turns group commit off), GROUP_COMMIT_DELAY, GROUP_COMMIT_CONCURRENCY
	GroupCommit httpapi.GroupCommit
	// API_KEY_CACHE_TTL: how long a valid API key is remembered (default 5s; 0 reads it every time)
	APIKeyCacheTTL time.Duration
	LogLevel       slog.Level

	PaymentGateway string               // PAYMENT_GATEWAY: "sandbox" (the only adapter so far, and the default)
	Dunning        domain.DunningPolicy // DUNNING_RETRY_DAYS ("1,3,5") and DUNNING_FINAL_ACTION (cancel|unpaid)
	// TRIAL_END_WITHOUT_PAYMENT_METHOD: past_due (default: invoice it, dunning chases it) or cancel.
	CancelTrialWithoutPaymentMethod bool
	BillingPoll                     time.Duration // BILLING_POLL: how often the scheduler looks for due work (default 1s)
	// BILLING_LEASE: how long work a process took waits, if that process dies, before another
	// takes it over (default 30s).
	BillingLease time.Duration
	// WORKERS: the background workers this process runs (default all three).
	Workers workers
}

// workers are the background parts of billingd a process runs besides its API. Every part must
// run in at least one process of a deployment: without a relay no event reaches the read models,
// without projectors they stand still, without a scheduler nothing renews or is charged.
type workers struct {
	Relay, Projectors, Scheduler bool
}

// parseWorkers reads WORKERS: "all" (the default), "none" (an API-only process), or a comma
// separated list of relay, projectors and scheduler.
func parseWorkers(v string) (workers, error) {
	switch v {
	case "", "all":
		return workers{Relay: true, Projectors: true, Scheduler: true}, nil
	case "none":
		return workers{}, nil
	}
	var w workers
	for _, part := range strings.Split(v, ",") {
		switch strings.TrimSpace(part) {
		case "relay":
			w.Relay = true
		case "projectors":
			w.Projectors = true
		case "scheduler":
			w.Scheduler = true
		default:
			return workers{}, fmt.Errorf("unknown worker %q: want all, none, or some of relay, projectors, scheduler", part)
		}
	}
	return w, nil
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
		DebugAddr:        getenv("DEBUG_ADDR"),
		TestClock:        getenv("BILLING_TEST_CLOCK") == "true",
		CatalogFile:      getenv("CATALOG_FILE"),
		SnapshotEvery:    eventstore.DefaultSnapshotEvery,
		GroupCommit:      httpapi.DefaultGroupCommit,
		APIKeyCacheTTL:   5 * time.Second,
		PaymentGateway:   or(getenv("PAYMENT_GATEWAY"), "sandbox"),
		Dunning:          domain.DefaultDunningPolicy,
		BillingPoll:      time.Second,
		BillingLease:     billing.DefaultLease,
	}
	if cfg.PaymentGateway != "sandbox" {
		return config{}, fmt.Errorf("PAYMENT_GATEWAY=%q: the only gateway so far is sandbox", cfg.PaymentGateway)
	}
	if v := getenv("DUNNING_RETRY_DAYS"); v != "" {
		days, err := parseRetryDays(v)
		if err != nil {
			return config{}, fmt.Errorf("DUNNING_RETRY_DAYS=%q: %w", v, err)
		}
		cfg.Dunning.RetryDays = days
	}
	switch v := getenv("DUNNING_FINAL_ACTION"); v {
	case "", "cancel":
	case "unpaid":
		cfg.Dunning.MarkUnpaid = true
	default:
		return config{}, fmt.Errorf("DUNNING_FINAL_ACTION=%q: want cancel or unpaid", v)
	}
	switch v := getenv("TRIAL_END_WITHOUT_PAYMENT_METHOD"); v {
	case "", "past_due":
	case "cancel":
		cfg.CancelTrialWithoutPaymentMethod = true
	default:
		return config{}, fmt.Errorf("TRIAL_END_WITHOUT_PAYMENT_METHOD=%q: want past_due or cancel", v)
	}
	if v := getenv("BILLING_POLL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return config{}, fmt.Errorf("BILLING_POLL=%q: want a positive duration such as 1s", v)
		}
		cfg.BillingPoll = d
	}
	if v := getenv("BILLING_LEASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond {
			return config{}, fmt.Errorf("BILLING_LEASE=%q: want a duration of at least 100ms, such as 30s", v)
		}
		cfg.BillingLease = d
	}
	w, err := parseWorkers(getenv("WORKERS"))
	if err != nil {
		return config{}, fmt.Errorf("WORKERS=%q: %w", getenv("WORKERS"), err)
	}
	cfg.Workers = w
	if v := getenv("SNAPSHOT_EVERY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return config{}, fmt.Errorf("SNAPSHOT_EVERY=%q: want 0 (no snapshots) or a positive number of events", v)
		}
		cfg.SnapshotEvery = n
	}
	for _, setting := range []struct {
		name string
		into *int
	}{{"GROUP_COMMIT_MAX_BATCH", &cfg.GroupCommit.MaxBatch}, {"GROUP_COMMIT_CONCURRENCY", &cfg.GroupCommit.Concurrency}} {
		if v := getenv(setting.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				return config{}, fmt.Errorf("%s=%q: want a positive integer", setting.name, v)
			}
			*setting.into = n
		}
	}
	if v := getenv("API_KEY_CACHE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Hour {
			return config{}, fmt.Errorf("API_KEY_CACHE_TTL=%q: want a duration such as 5s (0 turns the cache off), at most 1h", v)
		}
		cfg.APIKeyCacheTTL = d
	}
	if v := getenv("GROUP_COMMIT_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > time.Second {
			return config{}, fmt.Errorf("GROUP_COMMIT_DELAY=%q: want a duration such as 1ms, at most 1s", v)
		}
		cfg.GroupCommit.Delay = d
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
		slog.String("debug_addr", c.DebugAddr),
		slog.Bool("test_clock", c.TestClock),
		slog.String("catalog_file", c.CatalogFile),
		slog.Int("snapshot_every", c.SnapshotEvery),
		slog.Int("group_commit_max_batch", c.GroupCommit.MaxBatch),
		slog.Duration("group_commit_delay", c.GroupCommit.Delay),
		slog.Int("group_commit_concurrency", c.GroupCommit.Concurrency),
		slog.Duration("api_key_cache_ttl", c.APIKeyCacheTTL),
		slog.String("payment_gateway", c.PaymentGateway),
		slog.Any("dunning_retry_days", c.Dunning.RetryDays),
		slog.Bool("dunning_marks_unpaid", c.Dunning.MarkUnpaid),
		slog.Bool("cancel_trial_without_payment_method", c.CancelTrialWithoutPaymentMethod),
		slog.Duration("billing_poll", c.BillingPoll),
		slog.Duration("billing_lease", c.BillingLease),
		slog.Bool("relay", c.Workers.Relay), slog.Bool("projectors", c.Workers.Projectors),
		slog.Bool("scheduler", c.Workers.Scheduler),
	)
}

// parseRetryDays reads "1,3,5": increasing days after the first failed payment; "" or "none"
// for no retries.
func parseRetryDays(v string) ([]int, error) {
	if v == "none" {
		return []int{}, nil
	}
	var days []int
	for _, part := range strings.Split(v, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || d < 1 || d > 365 || (len(days) > 0 && d <= days[len(days)-1]) {
			return nil, fmt.Errorf("want increasing whole days between 1 and 365, comma separated, or none")
		}
		days = append(days, d)
	}
	return days, nil
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
