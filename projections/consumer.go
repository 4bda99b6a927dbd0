package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
)

// ConsumerConfig configures a Consumer. Zero values take the documented defaults.
type ConsumerConfig struct {
	DB *pgxpool.Pool
	// Redis runs every command but the blocking read: acks, claims, pending queries, group
	// management.
	Redis *redis.Client
	// Blocking is dedicated to XREADGROUP … BLOCK, so a blocked read never holds a connection
	// the other commands need. It must be another client than Redis. Consumers may share one
	// Blocking client if its pool has a connection for each of them.
	Blocking *redis.Client

	Streams   Streams
	Projector Projector // its Name() is the consumer group
	// ConsumerName identifies this consumer within the group. Keep it stable across restarts
	// (e.g. from configuration, or the pod name): a restarted consumer first finishes the
	// entries it had been given; under a new name they wait for MinIdle and an XAUTOCLAIM.
	ConsumerName string

	Block         time.Duration // longest XREADGROUP BLOCK; 1–5 s, default 2 s. Bounds shutdown latency.
	BatchSize     int           // entries read per partition at a time, default 100
	MaxDeliveries int           // deliveries before a failing entry is dead-lettered, default 5
	MinIdle       time.Duration // idle time after which another consumer's entry is claimed, default 30 s
	// RetryBackoff is the wait before a failed entry is delivered again, given how many times it
	// has been delivered. Default DefaultRetryBackoff.
	RetryBackoff func(attempt int) time.Duration
	Logger       *slog.Logger // default slog.Default()
}

// DefaultRetryBackoff waits 100 ms after the first delivery and doubles per delivery up to 5 s,
// with jitter (each wait is drawn from [d/2, d]) so consumers that failed together spread out.
func DefaultRetryBackoff(attempt int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < 5*time.Second; i++ {
		d *= 2
	}
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// ConsumerStats counts what a Consumer did since it was made.
type ConsumerStats struct {
	Applied      int64 // entries whose event changed the read model
	Duplicates   int64 // entries that changed nothing: already applied, or of a stream type the projector does not read
	Retries      int64 // failed applies left pending to be delivered again
	DeadLettered int64 // entries (or caught-up events) recorded in projection_dead_letters
	Trimmed      int64 // pending entries whose payload Redis no longer had (acked; the event is caught up from the store)
	Claimed      int64 // entries taken over from idle consumers (XAUTOCLAIM)
	CatchUps     int64 // catch-ups from the event store (Redis lost data)
	CaughtUp     int64 // events that changed the read model during catch-ups
}

type consumerCounters struct {
	applied, duplicates, retries, deadLettered, trimmed, claimed, catchUps, caughtUp atomic.Int64
}

// Consumer feeds one projector from the partition streams through the projector's consumer
// group. Several consumers (processes) of the same group share the partitions' entries; each
// entry's event is applied exactly once (Apply) and acknowledged only after its transaction
// committed, so a crash at any point means a redelivery, never a loss or a double change.
//
// Redis is a transport, not a source of truth: when a partition's group or entries are gone
// (FLUSHALL, a restart without persistence, trimming past unread entries), the consumer catches
// up from the event store (catchup.go) before it resumes reading Redis.
type Consumer struct {
	cfg       ConsumerConfig
	group     string
	keys      []string
	partition map[string]int // key → partition
	log       *slog.Logger
	stats     consumerCounters
	running   atomic.Bool
	polls     atomic.Int64 // loop iterations; tests use it to know a cycle went by

	// afterApply, when set (tests only), runs after an entry's event was applied and before it
	// is acknowledged.
	afterApply func(entryID string) hookAction
	// afterCatchUp, when set (tests only), runs after a catch-up, before missing groups are created.
	afterCatchUp func()
}

type hookAction int

const (
	proceed hookAction = iota
	skipAck            // as if the XACK were lost: the entry stays pending
	crash              // as if the process died: Run returns errCrashed at once
)

var errCrashed = errors.New("consumer crashed (test hook)")

// NewConsumer checks cfg, fills in defaults and returns a consumer ready to Run.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("consumer: DB is required")
	case cfg.Redis == nil || cfg.Blocking == nil:
		return nil, errors.New("consumer: Redis and Blocking clients are both required")
	case cfg.Redis == cfg.Blocking:
		return nil, errors.New("consumer: Blocking must be a client of its own, not the Redis client")
	case cfg.Projector == nil || cfg.Projector.Name() == "":
		return nil, errors.New("consumer: a Projector with a name is required")
	case cfg.Streams.Partitions < 1:
		return nil, fmt.Errorf("consumer: Streams.Partitions must be at least 1, not %d", cfg.Streams.Partitions)
	case cfg.ConsumerName == "":
		return nil, errors.New("consumer: ConsumerName is required (stable across restarts)")
	}
	if cfg.Block == 0 {
		cfg.Block = 2 * time.Second
	}
	if cfg.Block < time.Second || cfg.Block > 5*time.Second {
		return nil, fmt.Errorf("consumer: Block must be between 1 s and 5 s, not %s", cfg.Block)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = 5
	}
	if cfg.MinIdle <= 0 {
		cfg.MinIdle = 30 * time.Second
	}
	if cfg.RetryBackoff == nil {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Consumer{
		cfg:       cfg,
		group:     cfg.Projector.Name(),
		partition: make(map[string]int, cfg.Streams.Partitions),
		log:       cfg.Logger.With("projector", cfg.Projector.Name(), "consumer", cfg.ConsumerName),
	}
	for p := range cfg.Streams.Partitions {
		key := cfg.Streams.Key(p)
		c.keys = append(c.keys, key)
		c.partition[key] = p
	}
	return c, nil
}

// Stats returns the consumer's counters. It is safe to call while Run runs.
func (c *Consumer) Stats() ConsumerStats {
	s := &c.stats
	return ConsumerStats{
		Applied: s.applied.Load(), Duplicates: s.duplicates.Load(), Retries: s.retries.Load(),
		DeadLettered: s.deadLettered.Load(), Trimmed: s.trimmed.Load(), Claimed: s.claimed.Load(),
		CatchUps: s.catchUps.Load(), CaughtUp: s.caughtUp.Load(),
	}
}

// runState is what Run's loop remembers between steps.
type runState struct {
	heal     bool                        // check groups and gaps (at start, after NOGROUP)
	floors   map[int]eventstore.Position // partitions to catch up from at most here (trimmed entries)…
	through  map[int]eventstore.Position // …and at least through here (the last of them)
	unsure   map[int]bool                // partitions to catch up again (see heal)
	ownDue   bool                        // our own pending entries need (re)processing…
	ownAt    time.Time                   // …from this time (retry back-off)
	claimAt  time.Time                   // next XAUTOCLAIM and gap check
	failures int                         // consecutive failed steps, for the back-off between them
}

// Run consumes until ctx is done, then returns nil. It first drains the entries it already owns
// (XREADGROUP id 0), then reads new ones (">") with a bounded BLOCK, so it returns within
// about Block of ctx being cancelled. Transient failures (Redis or PostgreSQL unreachable) are
// logged and retried with back-off; they never end Run. Run must not be called concurrently.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("consumer: already running")
	}
	defer c.running.Store(false)
	c.log.Info("consumer starting", "partitions", c.cfg.Streams.Partitions, "prefix", c.cfg.Streams.Prefix)
	s := &runState{heal: true, ownDue: true, unsure: map[int]bool{}}
	for ctx.Err() == nil {
		c.polls.Add(1)
		err := c.step(ctx, s)
		switch {
		case errors.Is(err, errCrashed):
			return err
		case err != nil && ctx.Err() == nil:
			s.failures++
			wait := c.cfg.RetryBackoff(s.failures)
			c.log.Warn("consumer step failed; retrying", "err", err, "retry_in", wait)
			consumerSleep(ctx, wait)
		case err == nil:
			s.failures = 0
		}
	}
	c.log.Info("consumer stopped", "stats", c.Stats())
	return nil
}

// step does one unit of work, the first that is due of: healing (at the start, after NOGROUP,
// after trimmed entries), (re)processing our own pending entries (at the start, and after a
// failure's back-off), claiming idle entries (every MinIdle/2, with a gap check), and else one
// blocking read of new entries.
func (c *Consumer) step(ctx context.Context, s *runState) error {
	err := c.stepInner(ctx, s)
	if err != nil && lostData(err) {
		// A group or stream vanished under us: heal (catch up from the store) next.
		c.log.Warn("consumer group or stream missing in Redis; catching up from the event store", "err", err)
		s.heal = true
		return nil
	}
	return err
}

func (c *Consumer) stepInner(ctx context.Context, s *runState) error {
	now := time.Now()
	switch {
	case s.heal || len(s.floors) > 0:
		if err := c.heal(ctx, s.floors, s.through, s.unsure); err != nil {
			return err
		}
		s.heal, s.floors, s.through = false, nil, nil
		return nil
	case s.ownDue && !now.Before(s.ownAt):
		return c.drainOwn(ctx, s)
	case !now.Before(s.claimAt):
		if err := c.heal(ctx, nil, nil, s.unsure); err != nil { // a periodic gap check
			return err
		}
		if err := c.claim(ctx, s); err != nil {
			return err
		}
		s.claimAt = now.Add(max(c.cfg.MinIdle/2, 50*time.Millisecond))
		return nil
	}
	return c.readNew(ctx, s)
}

// drainOwn re-reads this consumer's pending entries (XREADGROUP with ids, which also counts a
// delivery of each) page by page and processes them.
func (c *Consumer) drainOwn(ctx context.Context, s *runState) error {
	s.ownDue = false
	after := make([]string, len(c.keys))
	for i := range after {
		after[i] = "0"
	}
	for {
		res, err := c.cfg.Redis.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: c.group, Consumer: c.cfg.ConsumerName, Streams: append(append([]string{}, c.keys...), after...),
			Count: int64(c.cfg.BatchSize), Block: -1, // no BLOCK: pending entries are there or not
		}).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			s.ownDue = true
			return fmt.Errorf("read own pending entries: %w", err)
		}
		n := 0
		for _, st := range res {
			if len(st.Messages) == 0 {
				continue
			}
			p := c.partition[st.Stream]
			n += len(st.Messages)
			after[p] = st.Messages[len(st.Messages)-1].ID
			if err := c.process(ctx, s, p, st.Messages); err != nil {
				s.ownDue = true
				return err
			}
		}
		if n == 0 {
			return nil
		}
	}
}

// readNew waits up to Block (less when a retry or a claim is due sooner) for new entries on
// every partition and processes them.
func (c *Consumer) readNew(ctx context.Context, s *runState) error {
	wait := min(c.cfg.Block, time.Until(s.claimAt))
	if s.ownDue {
		wait = min(wait, time.Until(s.ownAt))
	}
	if wait < 10*time.Millisecond {
		wait = 10 * time.Millisecond // BLOCK 0 would mean forever
	}
	streams := make([]string, 0, 2*len(c.keys))
	streams = append(streams, c.keys...)
	for range c.keys {
		streams = append(streams, ">")
	}
	res, err := c.cfg.Blocking.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.group, Consumer: c.cfg.ConsumerName, Streams: streams,
		Count: int64(c.cfg.BatchSize), Block: wait,
	}).Result()
	if errors.Is(err, redis.Nil) || ctx.Err() != nil {
		return nil // nothing new in time, or shutting down (the entries stay pending: ours on restart)
	}
	if err != nil {
		return fmt.Errorf("read new entries: %w", err)
	}
	return c.processRead(ctx, s, res)
}

// processRead processes what one XREADGROUP returned. Its fast path applies every entry of
// every partition in one transaction (moving each partition's checkpoint where that is safe) and
// acknowledges them in one round trip: one commit per read rather than per entry, which is what
// keeps the read models fresh under load. If anything does not fit the fast path (an entry that
// does not decode, a payload Redis trimmed, an apply that fails, a test hook), nothing of it is
// kept and each partition goes through process, entry by entry, where failures are isolated,
// retried and dead-lettered.
func (c *Consumer) processRead(ctx context.Context, s *runState, res []redis.XStream) error {
	if done, err := c.processBatch(ctx, res); done || err != nil {
		return err
	}
	for _, st := range res {
		if err := c.process(ctx, s, c.partition[st.Stream], st.Messages); err != nil {
			return err
		}
	}
	return nil
}

// claim takes over entries other consumers (dead ones, presumably) have held for longer than
// MinIdle, and processes them. Entries whose payload is gone are reported as trimmed.
func (c *Consumer) claim(ctx context.Context, s *runState) error {
	for p, key := range c.keys {
		start := "0-0"
		sawDeleted := false
		for {
			msgs, next, deleted, err := c.cfg.Redis.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
				Stream: key, Group: c.group, Consumer: c.cfg.ConsumerName,
				MinIdle: c.cfg.MinIdle, Start: start, Count: int64(c.cfg.BatchSize),
			}).Result()
			if err != nil {
				return fmt.Errorf("claim idle entries of %s: %w", key, err)
			}
			for _, id := range deleted {
				sawDeleted = true
				if err := c.trimmed(ctx, s, p, id); err != nil {
					return err
				}
			}
			if len(msgs) > 0 {
				c.stats.claimed.Add(int64(len(msgs)))
				c.log.Info("claimed idle entries", "partition", p, "count", len(msgs), "first", msgs[0].ID)
				if err := c.processFrom(ctx, s, p, msgs, !sawDeleted); err != nil {
					return err
				}
			}
			if next == "" || next == "0-0" {
				break
			}
			start = next
		}
	}
	return nil
}

// process applies a batch of one partition's entries, in entry order.
//
// The partition checkpoint says where a catch-up from the store starts, so it must never pass
// an entry whose event is not applied yet. An entry moves it (Apply with the partition) only
// when nothing before it in the partition is still pending anywhere in the group: when the batch
// starts at the group's lowest pending entry, and until an entry of the batch fails or turns
// out to be trimmed. Otherwise the event is applied with partition -1 and the checkpoint lags,
// which costs a catch-up a few duplicates but loses nothing.
func (c *Consumer) process(ctx context.Context, s *runState, p int, msgs []redis.XMessage) error {
	return c.processFrom(ctx, s, p, msgs, true)
}

// processFrom is process; mayCheckpoint false keeps the checkpoint where it is (claimed entries
// after some whose payload was gone: Redis dropped those from the pending list, so the lowest
// pending entry no longer shows them).
func (c *Consumer) processFrom(ctx context.Context, s *runState, p int, msgs []redis.XMessage, mayCheckpoint bool) error {
	if len(msgs) == 0 {
		return nil
	}
	key := c.keys[p]
	movable := false
	if pend, err := c.cfg.Redis.XPending(ctx, key, c.group).Result(); err == nil {
		movable = mayCheckpoint && pend.Lower == msgs[0].ID
	} else if lostData(err) {
		return err
	}
	for _, m := range msgs {
		if ctx.Err() != nil {
			return nil // shutting down: what is left stays pending
		}
		if m.Values == nil {
			movable = false
			if err := c.trimmed(ctx, s, p, m.ID); err != nil {
				return err
			}
			continue
		}
		e, err := Decode(m.ID, m.Values)
		if err == nil {
			checkpoint := -1
			if movable {
				checkpoint = p
			}
			var applied bool
			applied, err = Apply(ctx, c.cfg.DB, c.cfg.Projector, e, checkpoint)
			if err == nil {
				action := proceed
				if c.afterApply != nil {
					action = c.afterApply(m.ID)
				}
				switch action {
				case crash:
					return errCrashed
				case skipAck:
				default:
					if err := c.ack(ctx, p, m.ID); err != nil {
						return err
					}
				}
				if applied {
					c.stats.applied.Add(1)
				} else {
					c.stats.duplicates.Add(1)
					c.log.Debug("duplicate delivery acknowledged", "partition", p, "entry", m.ID, "event", e.ID)
				}
				continue
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		movable = false
		if err := c.failed(ctx, s, p, m, e, err); err != nil {
			return err
		}
	}
	return nil
}

// processBatch is processRead's fast path; it reports false, having changed nothing, when the
// read does not fit it.
func (c *Consumer) processBatch(ctx context.Context, res []redis.XStream) (bool, error) {
	if c.afterApply != nil {
		return false, nil
	}
	var events []eventstore.Event
	last := make([]eventstore.Position, len(res)) // of each partition's last entry
	for i, st := range res {
		for _, m := range st.Messages {
			if m.Values == nil {
				return false, nil
			}
			e, err := Decode(m.ID, m.Values)
			if err != nil {
				return false, nil
			}
			events = append(events, e)
			last[i] = e.Position
		}
	}
	if len(events) == 0 {
		return true, nil
	}
	// A partition's checkpoint may move only if the read starts at its lowest pending entry
	// (see processFrom).
	pipe := c.cfg.Redis.Pipeline()
	pending := make([]*redis.XPendingCmd, len(res))
	for i, st := range res {
		pending[i] = pipe.XPending(ctx, st.Stream, c.group)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, nil
	}
	var checkpoints []partitionPosition
	for i, st := range res {
		if len(st.Messages) > 0 && pending[i].Val().Lower == st.Messages[0].ID {
			checkpoints = append(checkpoints, partitionPosition{c.partition[st.Stream], last[i]})
		}
	}
	applied, err := ApplyBatch(ctx, c.cfg.DB, c.cfg.Projector, events, checkpoints)
	if err != nil {
		return false, nil
	}
	pipe = c.cfg.Redis.Pipeline()
	for _, st := range res {
		ids := make([]string, len(st.Messages))
		for i, m := range st.Messages {
			ids[i] = m.ID
		}
		if len(ids) > 0 {
			pipe.XAck(context.WithoutCancel(ctx), st.Stream, c.group, ids...)
		}
	}
	if _, err := pipe.Exec(context.WithoutCancel(ctx)); err != nil {
		// Applied but not acknowledged: redelivered later as duplicates, which change nothing.
		return true, fmt.Errorf("ack %d entries: %w", len(events), err)
	}
	c.stats.applied.Add(int64(applied))
	c.stats.duplicates.Add(int64(len(events) - applied))
	return true, nil
}

// failed handles an entry that could not be applied: it stays pending and is delivered again
// after a back-off, until it has been delivered MaxDeliveries times; then it is dead-lettered.
// An entry still out of order by then gets its missing predecessors from the event store first
// (their entries may sit with a dead consumer until MinIdle, or be lost): it is dead-lettered
// only if that fails too. A failure while PostgreSQL is unreachable is not the entry's fault:
// the batch stops there and nothing is dead-lettered for it. e is the decoded event (zero if
// the entry did not decode).
func (c *Consumer) failed(ctx context.Context, s *runState, p int, m redis.XMessage, e eventstore.Event, cause error) error {
	outOfOrder := errors.Is(cause, ErrOutOfOrder)
	if !outOfOrder && c.databaseDown(ctx, cause) {
		s.markOwnDue(time.Now())
		return fmt.Errorf("apply entry %s of partition %d with the database unreachable: %w", m.ID, p, cause)
	}
	key := c.keys[p]
	pend, err := c.cfg.Redis.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: key, Group: c.group, Start: m.ID, End: m.ID, Count: 1,
	}).Result()
	if err != nil {
		return fmt.Errorf("delivery count of %s %s: %w", key, m.ID, err)
	}
	if len(pend) == 0 {
		return nil // no longer pending: another consumer claimed and settled it
	}
	deliveries := pend[0].RetryCount
	if deliveries < int64(c.cfg.MaxDeliveries) {
		c.stats.retries.Add(1)
		wait := c.cfg.RetryBackoff(int(deliveries))
		if pend[0].Consumer == c.cfg.ConsumerName {
			s.markOwnDue(time.Now().Add(wait))
		}
		c.log.Warn("entry failed; it will be delivered again", "partition", p, "entry", m.ID,
			"deliveries", deliveries, "max_deliveries", c.cfg.MaxDeliveries, "retry_in", wait, "err", cause)
		return nil
	}
	if outOfOrder {
		n, err := c.applyPredecessors(ctx, e)
		if err == nil {
			var applied bool
			if applied, err = Apply(ctx, c.cfg.DB, c.cfg.Projector, e, -1); err == nil {
				c.stats.caughtUp.Add(int64(n))
				if applied {
					c.stats.applied.Add(1)
				} else {
					c.stats.duplicates.Add(1)
				}
				c.log.Warn("out-of-order entry applied after its predecessors from the event store",
					"partition", p, "entry", m.ID, "event", e.ID, "predecessors", n)
				return c.ack(ctx, p, m.ID)
			}
		}
		c.stats.caughtUp.Add(int64(n))
		if ctx.Err() != nil {
			return nil
		}
		if c.databaseDown(ctx, err) {
			s.markOwnDue(time.Now())
			return fmt.Errorf("apply the predecessors of entry %s with the database unreachable: %w", m.ID, err)
		}
		cause = fmt.Errorf("%w; its predecessors from the event store: %w", cause, err)
	}
	return c.deadLetter(ctx, s, p, m, cause, deliveries)
}

// ack acknowledges an entry whose event is applied. It completes even if ctx ends meanwhile
// (the apply has committed; a lost ack would only cost a redelivery).
func (c *Consumer) ack(ctx context.Context, p int, ids ...string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.cfg.Redis.XAck(ctx, c.keys[p], c.group, ids...).Err(); err != nil {
		return fmt.Errorf("ack %s %v: %w", c.keys[p], ids, err)
	}
	return nil
}

func (s *runState) markOwnDue(at time.Time) {
	if !s.ownDue || at.Before(s.ownAt) {
		s.ownAt = at
	}
	s.ownDue = true
}

// deadLetter records an entry in projection_dead_letters, then acknowledges it. The row comes
// first: once the entry is acknowledged the partition's checkpoint may pass its event, and the
// row is then the only record that the read model lacks it. If PostgreSQL does not take the row
// the entry is not acknowledged: it stays pending and is delivered (and dead-lettered) again, as
// it is after a crash between the two, when recordDeadLetter updates the row.
func (c *Consumer) deadLetter(ctx context.Context, s *runState, p int, m redis.XMessage, cause error, deliveries int64) error {
	if err := recordDeadLetter(ctx, c.cfg.DB, entryDeadLetter(c.group, p, m, cause, deliveries, time.Now())); err != nil {
		s.markOwnDue(time.Now())
		return fmt.Errorf("dead-letter %s %s (left pending): %w", c.keys[p], m.ID, err)
	}
	if err := c.ack(ctx, p, m.ID); err != nil {
		return err
	}
	c.stats.deadLettered.Add(1)
	c.log.Error("entry dead-lettered", "partition", p, "entry", m.ID, "event", m.Values["event_id"],
		"type", m.Values["type"], "deliveries", deliveries, "err", cause)
	return nil
}

// trimmed acknowledges a pending entry whose payload Redis no longer has (trimmed or deleted)
// and has its event caught up from the store: the entry id is the event's log position, so the
// partition's next catch-up starts just before it.
func (c *Consumer) trimmed(ctx context.Context, s *runState, p int, id string) error {
	if err := c.cfg.Redis.XAck(ctx, c.keys[p], c.group, id).Err(); err != nil {
		return fmt.Errorf("ack trimmed entry %s %s: %w", c.keys[p], id, err)
	}
	c.stats.trimmed.Add(1)
	c.log.Warn("pending entry was trimmed from Redis; acknowledged, its event is caught up from the event store",
		"partition", p, "entry", id)
	// An id that is not a log position: catch up from the start, and through the end.
	floor, last := eventstore.Position{}, eventstore.Position{TransactionID: math.MaxUint64, GlobalPosition: math.MaxInt64}
	if pos, err := ParseEntryID(id); err == nil && pos.GlobalPosition > 0 {
		floor = eventstore.Position{TransactionID: pos.TransactionID, GlobalPosition: pos.GlobalPosition - 1}
		last = pos
	}
	if s.floors == nil {
		s.floors, s.through = map[int]eventstore.Position{}, map[int]eventstore.Position{}
	}
	if old, ok := s.floors[p]; !ok || floor.Before(old) {
		s.floors[p] = floor
	}
	// The catch-up stops where the stream begins, but an entry deleted from the middle of the
	// stream (XDEL) lies after that: it must go at least this far.
	if s.through[p].Before(last) {
		s.through[p] = last
	}
	return nil
}

func (c *Consumer) databaseUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.cfg.DB.Ping(ctx) == nil
}

// databaseDown reports whether an apply failed because PostgreSQL was unreachable rather than
// because of the event: the error itself says so (a refused or lost connection, a server
// shutting down or starting up), or the database does not answer now. Asking the error first
// matters when the server comes back: a ping right after a failure that said "the database
// system is starting up" may already succeed, and the entry, delivered many times during the
// outage, would be dead-lettered for the database's failure.
func (c *Consumer) databaseDown(ctx context.Context, cause error) bool {
	return unreachable(cause) || !c.databaseUp(ctx)
}

// unreachable reports errors that mean the database could not be reached or went away mid
// statement.
func unreachable(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	var pgErr *pgconn.PgError
	// Class 57P: operator intervention (admin shutdown, crash shutdown, cannot connect now).
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || (errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "57P"))
}

// lostData reports whether a Redis error means a group or stream is gone.
func lostData(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "NOGROUP") || strings.Contains(msg, "UNBLOCKED") ||
		strings.Contains(msg, "no such key")
}

func consumerSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
