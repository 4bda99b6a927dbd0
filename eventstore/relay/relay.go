// Package relay publishes the event store to Redis Streams. Commands write only to Postgres; the
// relay tails the gap-free global log and appends every event to its partition stream, then
// records how far it got in Postgres. Exactly one relay is active among all billingd processes
// (a Postgres advisory lock); the others stand by and take over when it dies.
package relay

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// Config is what a relay needs. Zero durations and sizes take the defaults shown.
type Config struct {
	DB      *pgxpool.Pool
	Redis   *redis.Client
	Streams projections.Streams
	Name    string // checkpoint and lock name, default "relay"
	// Groups are the consumer groups that read the streams (the projectors'): a partition is
	// not trimmed while one of them is missing there (see Trim).
	Groups []string

	BatchSize    int           // events per read, default 500
	PollInterval time.Duration // fallback when no notification arrives, default 1s
	Takeover     time.Duration // how often a standby tries to become the relay, default 1s
	TrimEvery    time.Duration // how often acknowledged entries are trimmed, default 10s
	// CheckpointEvery is how often, while events keep coming, the checkpoint is saved; it is
	// also saved whenever a read finds nothing new. Default 100 ms. Publishing is idempotent
	// (Redis refuses an entry at or below a partition's last id), so a relay that dies with an
	// older checkpoint only offers Redis again what it has: a commit per batch would cost the
	// database a flushed commit per transaction of events at high write rates.
	CheckpointEvery time.Duration
	MaxLen          int64 // per-partition length cap, a safety net only, default 1,000,000

	Logger *slog.Logger

	// AfterPublish, if set, runs after a batch is in Redis, before the checkpoint is saved.
	// Tests use it to crash the relay at its worst moment; it is never set in production.
	AfterPublish func(batch []eventstore.Event) error
}

// Relay publishes events from the store to Redis Streams.
type Relay struct {
	cfg       Config
	leading   atomic.Bool
	published atomic.Int64
	position  atomic.Pointer[eventstore.Position]
}

// New returns a relay; Run starts it.
func New(cfg Config) *Relay {
	if cfg.Name == "" {
		cfg.Name = "relay"
	}
	cfg.BatchSize = cmpOr(cfg.BatchSize, 500)
	cfg.PollInterval = cmpOr(cfg.PollInterval, time.Second)
	cfg.Takeover = cmpOr(cfg.Takeover, time.Second)
	cfg.TrimEvery = cmpOr(cfg.TrimEvery, 10*time.Second)
	cfg.CheckpointEvery = cmpOr(cfg.CheckpointEvery, 100*time.Millisecond)
	cfg.MaxLen = cmpOr(cfg.MaxLen, 1_000_000)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{cfg: cfg}
}

// Leading reports whether this relay holds the lock and is publishing.
func (r *Relay) Leading() bool { return r.leading.Load() }

// Published is how many entries this relay has added to Redis.
func (r *Relay) Published() int64 { return r.published.Load() }

// Checkpoint is the position up to which this relay has published (zero if it never led); the
// saved checkpoint follows it within CheckpointEvery.
func (r *Relay) Checkpoint() eventstore.Position {
	if p := r.position.Load(); p != nil {
		return *p
	}
	return eventstore.Position{}
}

// Run stands by until it can take the relay lock, then publishes until ctx is done or its lock
// connection fails, and stands by again.
func (r *Relay) Run(ctx context.Context) error {
	for {
		err := r.lead(ctx)
		r.leading.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.cfg.Logger.Warn("relay stopped leading", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.Takeover):
		}
	}
}

// lead takes the lock on a dedicated connection (a session-level advisory lock dies with its
// connection, so a crashed process hands over at once) and publishes while it holds it.
func (r *Relay) lead(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, r.cfg.DB.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, "billing relay "+r.cfg.Name).Scan(&locked); err != nil {
		return fmt.Errorf("take relay lock: %w", err)
	}
	if !locked {
		return nil // another process is the relay
	}
	if _, err := conn.Exec(ctx, `LISTEN `+eventstore.NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	checkpoint, err := r.loadCheckpoint(ctx)
	if err != nil {
		return err
	}
	r.leading.Store(true)
	r.cfg.Logger.Info("relay leading", "name", r.cfg.Name, "checkpoint", checkpoint)

	lastTrim := time.Now()
	saved, lastSave := checkpoint, time.Now()
	// After a notification, an empty read usually means the new events are held back by an
	// older transaction still running (see eventstore.ReadAll); look again soon, backing off
	// towards the poll interval, rather than waiting for the next notification.
	retry := r.cfg.PollInterval
	for {
		n, err := r.publishBatch(ctx, &checkpoint)
		if err != nil {
			return err
		}
		if n > 0 {
			retry = r.cfg.PollInterval
		}
		if checkpoint != saved && (n == 0 || time.Since(lastSave) >= r.cfg.CheckpointEvery) {
			if err := r.saveCheckpoint(ctx, checkpoint); err != nil {
				return err
			}
			saved, lastSave = checkpoint, time.Now()
		}
		if time.Since(lastTrim) >= r.cfg.TrimEvery {
			if err := Trim(ctx, r.cfg.Redis, r.cfg.Streams, r.cfg.Groups...); err != nil {
				r.cfg.Logger.Warn("trim streams", "error", err)
			}
			lastTrim = time.Now()
		}
		if n == r.cfg.BatchSize {
			continue // more is waiting
		}
		// Caught up: wait for a commit notification, or poll (soon, while the checkpoint is
		// behind, so that an idle relay saves it).
		wait := retry
		if checkpoint != saved {
			wait = min(wait, r.cfg.CheckpointEvery)
		}
		waitCtx, cancel := context.WithTimeout(ctx, wait)
		_, err = conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			retry = 5 * time.Millisecond
		case errors.Is(err, context.DeadlineExceeded):
			retry = min(2*retry, r.cfg.PollInterval)
		default:
			return fmt.Errorf("wait for notification: %w", err) // the lock connection is gone
		}
	}
}

// publishBatch publishes the next batch after the checkpoint and moves the checkpoint past it.
func (r *Relay) publishBatch(ctx context.Context, checkpoint *eventstore.Position) (int, error) {
	events, err := eventstore.ReadAll(ctx, r.cfg.DB, *checkpoint, r.cfg.BatchSize)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	published, err := r.publish(ctx, events)
	if err != nil {
		return 0, err
	}
	if r.cfg.AfterPublish != nil {
		if err := r.cfg.AfterPublish(events); err != nil {
			return 0, err
		}
	}
	next := events[len(events)-1].Position
	*checkpoint = next
	r.position.Store(&next)
	r.published.Add(int64(published))
	return len(events), nil
}

// publishScript appends entries to one stream in order, atomically with respect to other
// clients. An entry whose id the stream already holds (published before a crash) is skipped;
// any other error stops the script there, so a later entry is never added after a failed
// earlier one (which would make the earlier one impossible to add: ids only grow).
// ARGV: maxlen, count, then per entry: id, field count, field, value, ….
// Returns {entries added, entries handled, error or ""}.
//
//go:embed publish.lua
var publishLua string

var publishScript = redis.NewScript(publishLua)

// publish appends the events to their partitions: one script per partition, pipelined.
func (r *Relay) publish(ctx context.Context, events []eventstore.Event) (int, error) {
	byPartition := map[int][]any{}
	counts := map[int]int{}
	for _, e := range events {
		p := r.cfg.Streams.Partition(e.StreamID)
		fields := projections.Encode(e)
		args := append(byPartition[p], projections.EntryID(e.Position), len(fields))
		for k, v := range fields {
			args = append(args, k, v)
		}
		byPartition[p] = args
		counts[p]++
	}
	pipe := r.cfg.Redis.Pipeline()
	cmds := map[int]*redis.Cmd{}
	for p, args := range byPartition {
		cmds[p] = publishScript.Eval(ctx, pipe, []string{r.cfg.Streams.Key(p)}, append([]any{r.cfg.MaxLen, counts[p]}, args...)...)
	}
	pipe.Exec(ctx) // per-command errors are read below
	added := 0
	for p, cmd := range cmds {
		res, err := cmd.Slice()
		if err != nil {
			return 0, fmt.Errorf("publish to %s: %w", r.cfg.Streams.Key(p), err)
		}
		if msg, _ := res[2].(string); msg != "" {
			return 0, fmt.Errorf("publish to %s after %v entries: %s", r.cfg.Streams.Key(p), res[1], msg)
		}
		n, _ := res[0].(int64)
		added += int(n)
	}
	return added, nil
}

func (r *Relay) loadCheckpoint(ctx context.Context) (eventstore.Position, error) {
	var pos eventstore.Position
	var tx int64
	err := r.cfg.DB.QueryRow(ctx, `SELECT transaction_id::text::bigint, global_position FROM relay_checkpoints WHERE name = $1`,
		r.cfg.Name).Scan(&tx, &pos.GlobalPosition)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Position{}, nil
	}
	pos.TransactionID = uint64(tx)
	if err != nil {
		return pos, fmt.Errorf("load relay checkpoint: %w", err)
	}
	return pos, nil
}

// saveCheckpoint only ever moves the checkpoint forward, so a relay that lost its lock and
// still finishes a batch cannot move it back.
func (r *Relay) saveCheckpoint(ctx context.Context, pos eventstore.Position) error {
	_, err := r.cfg.DB.Exec(ctx, `INSERT INTO relay_checkpoints (name, transaction_id, global_position)
		VALUES ($1, $2::bigint::text::xid8, $3)
		ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id,
			global_position = excluded.global_position, updated_at = now()
		WHERE (relay_checkpoints.transaction_id, relay_checkpoints.global_position)
		    < (excluded.transaction_id, excluded.global_position)`,
		r.cfg.Name, int64(pos.TransactionID), pos.GlobalPosition)
	if err != nil {
		return fmt.Errorf("save relay checkpoint: %w", err)
	}
	return nil
}

// Lag is the number of committed events the relay has not published yet. The checkpoint is
// read first and then given to the count as parameters, so the count is a range of the
// (transaction_id, global_position) index; with the checkpoint in a subquery the planner could
// not see the range's bounds and counted by reading the whole log.
func Lag(ctx context.Context, db eventstore.Querier, name string) (int64, error) {
	var tx, pos int64
	err := db.QueryRow(ctx, `SELECT transaction_id::text::bigint, global_position FROM relay_checkpoints WHERE name = $1`,
		name).Scan(&tx, &pos)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	var n int64
	err = db.QueryRow(ctx, `SELECT count(*) FROM events
		WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2::bigint)`, tx, pos).Scan(&n)
	return n, err
}

func cmpOr[T comparable](v, fallback T) T {
	var zero T
	if v == zero {
		return fallback
	}
	return v
}
