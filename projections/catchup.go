package projections

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
)

// Redis is not trusted to keep data: a FLUSHALL, a restart without persistence or trimming can
// take entries a projector has not applied yet. The event store keeps everything, and each
// projector's partition checkpoints say where it stands, so the consumer repairs itself:
//
//   - a partition whose group (or stream) is missing is caught up from the store after its
//     checkpoint, and only then is its group created, at the checkpoint (not at "$", which would
//     skip what the relay published meanwhile; not at "0", which would redeliver everything);
//   - a partition whose stream starts beyond its checkpoint, with events of the partition in the
//     store in between that the projector has not applied, lost entries to trimming: it is
//     caught up the same way (checked at the start and with every XAUTOCLAIM round);
//   - a pending entry whose payload was trimmed is caught up from just before its position.
//
// Catching up applies, in log order, every stored event of the affected partitions after their
// starting points, through Apply (duplicates are no-ops, so overlapping with Redis is harmless),
// up to where each partition's stream begins: Redis holds the rest (see catchUp). An event
// refused as out of order gets its predecessors from the store; one that keeps failing is
// dead-lettered and the catch-up goes on.
//
// All of this rests on one invariant: a partition's checkpoint never passes an event that is
// not settled (applied, or dead-lettered: it has a row in projection_dead_letters, committed
// before the checkpoint can pass it). The consumer keeps it by moving the checkpoint only from
// the group's lowest pending entry on (see process), and by acknowledging a dead letter only once
// its row is committed; the catch-up by going in log order, and by writing a dead letter's row
// in the transaction that moves the checkpoint past it.

const catchUpBatch = 500

// heal checks every partition's group and stream and catches up the partitions that need it
// (plus those in floors, from at most their floor and at least through their through, and those
// in unsure), then creates the missing groups.
//
// A catch-up stops where the streams begin (catchUp), which is only right if the groups are
// created in the Redis those streams were read from. If Redis is emptied again in between (a
// FLUSHALL, then a restart a moment later), the groups are created on an empty Redis, and what
// the relay had published after the catch-up's stopping point is in neither the read model nor
// Redis; no NOGROUP would tell. So heal marks each Redis's lifetime with a key (an emptied Redis
// loses it) and compares it before the catch-up and after the groups are created: when it
// changed, it catches those partitions up again. They stay in unsure (the caller's, kept across
// failed attempts) until a heal completes within one lifetime.
func (c *Consumer) heal(ctx context.Context, floors, through map[int]eventstore.Position, unsure map[int]bool) error {
	for {
		lifetime, err := c.redisLifetime(ctx)
		if err != nil {
			return err
		}
		checkpoints, err := c.checkpoints(ctx)
		if err != nil {
			return err
		}
		affected := map[int]eventstore.Position{}
		var missing []int
		for p := range c.keys {
			exists, err := c.groupExists(ctx, p)
			if err != nil {
				return err
			}
			from := checkpoints[p]
			if floor, ok := floors[p]; ok && floor.Before(from) {
				from = floor
			}
			switch {
			case !exists:
				missing = append(missing, p)
				affected[p] = from
			case floorSet(floors, p) || unsure[p]:
				affected[p] = from
			default:
				gap, err := c.gapBefore(ctx, p, from)
				if err != nil {
					return err
				}
				if gap {
					affected[p] = from
				}
			}
		}
		if len(affected) == 0 {
			return nil
		}
		for p := range affected {
			unsure[p] = true
		}
		if err := c.catchUp(ctx, affected, through); err != nil {
			return err
		}
		if c.afterCatchUp != nil {
			c.afterCatchUp()
		}
		for _, p := range missing {
			if err := c.createGroup(ctx, p); err != nil {
				return err
			}
		}
		now, err := c.cfg.Redis.Get(ctx, c.lifetimeKey()).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("redis lifetime: %w", err)
		}
		if now == lifetime {
			clear(unsure)
			return nil
		}
		c.log.Warn("Redis was emptied during the catch-up; catching up again", "partitions", slices.Sorted(maps.Keys(affected)))
	}
}

// redisLifetime returns the mark of the current Redis's lifetime, setting one if there is none.
func (c *Consumer) redisLifetime(ctx context.Context) (string, error) {
	key := c.lifetimeKey()
	if err := c.cfg.Redis.SetNX(ctx, key, uuid.NewString(), 0).Err(); err != nil {
		return "", fmt.Errorf("redis lifetime: %w", err)
	}
	v, err := c.cfg.Redis.Get(ctx, key).Result()
	if err != nil {
		return "", fmt.Errorf("redis lifetime: %w", err)
	}
	return v, nil
}

func (c *Consumer) lifetimeKey() string { return c.cfg.Streams.Prefix + "lifetime" }

func floorSet(floors map[int]eventstore.Position, p int) bool { _, ok := floors[p]; return ok }

// catchUp applies the stored events of the affected partitions that follow each partition's
// starting point, in log order, up to the first entry of the partition's stream (and at least
// through the partition's position in through: entries deleted from the middle of a stream,
// reported by the consumer as trimmed), or until the store has nothing more for a partition
// whose stream has no entry yet.
//
// It stops where the streams begin because a stream holds every event of its partition from its
// first entry on (the relay publishes in log order; trimming and MAXLEN only take entries from
// the front), so the group, created at the checkpoint once the catch-up is done, is delivered
// the rest. Catching up until the store has nothing more, as it once did, never ended while
// commands appended faster than the catch-up applied (one event per transaction, every event of
// every partition, and every process's consumer doing the same work): the group is only created
// at the end, so the projector stopped reading Redis and fell further behind for as long as the
// load lasted (TestChaosRedisEmptied, TestCatchUpEndsWhereRedisTakesOver).
func (c *Consumer) catchUp(ctx context.Context, affected, through map[int]eventstore.Position) error {
	c.stats.catchUps.Add(1)
	var from eventstore.Position
	parts := make([]int, 0, len(affected))
	first := true
	for p, pos := range affected {
		parts = append(parts, p)
		if first || pos.Before(from) {
			from, first = pos, false
		}
	}
	slices.Sort(parts)
	c.log.Warn("catching up from the event store", "partitions", parts, "from", EntryID(from))
	applied := 0
	pos := from
	heads := map[int]eventstore.Position{} // each affected partition's first entry, once it has one
	for {
		c.streamHeads(ctx, affected, heads)
		if len(heads) == len(affected) && !pos.Before(latest(heads)) && !pos.Before(latest(through)) {
			break // Redis has everything after this
		}
		events, err := eventstore.ReadAll(ctx, c.cfg.DB, pos, catchUpBatch)
		if err != nil {
			return fmt.Errorf("catch up: %w", err)
		}
		if len(events) == 0 {
			break
		}
		var missed []eventstore.Event
		last := map[int]eventstore.Position{}
		for _, e := range events {
			pos = e.Position
			p := c.cfg.Streams.Partition(e.StreamID)
			start, ok := affected[p]
			if !ok || !start.Before(e.Position) {
				continue
			}
			if head, ok := heads[p]; ok && !e.Position.Before(head) && through[p].Before(e.Position) {
				continue // in the stream: the group will deliver it
			}
			missed = append(missed, e)
			last[p] = e.Position
		}
		n, err := c.catchUpEvents(ctx, missed, last)
		if err != nil {
			return fmt.Errorf("catch up: %w", err)
		}
		applied += n
	}
	c.log.Warn("caught up from the event store", "partitions", parts, "applied", applied, "until", EntryID(pos))
	return nil
}

// catchUpEvents applies events (read from the store, in log order) and moves each partition's
// checkpoint to its last of them: in one transaction when it can (ApplyBatch), else, when any of
// them fails or comes before its predecessor, one by one with catchUpEvent, which gets missing
// predecessors from the store and dead-letters what keeps failing. It returns how many changed
// the read model.
func (c *Consumer) catchUpEvents(ctx context.Context, events []eventstore.Event, last map[int]eventstore.Position) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	checkpoints := make([]partitionPosition, 0, len(last))
	for p, pos := range last {
		checkpoints = append(checkpoints, partitionPosition{p, pos})
	}
	if n, err := ApplyBatch(ctx, c.cfg.DB, c.cfg.Projector, events, checkpoints); err == nil {
		c.stats.caughtUp.Add(int64(n))
		return n, nil
	}
	applied := 0
	for _, e := range events {
		changed, err := c.catchUpEvent(ctx, c.cfg.Streams.Partition(e.StreamID), e)
		if err != nil {
			return applied, err
		}
		if changed {
			applied++
			c.stats.caughtUp.Add(1)
		}
	}
	return applied, nil
}

// streamHeads records in heads the first entry of each affected partition's stream that has one
// and is not recorded yet. A stream that is missing, empty, unreadable or whose first id is no
// log position is left out: the catch-up then goes on for its partition, which at worst
// applies what Redis also delivers (duplicates, no-ops).
func (c *Consumer) streamHeads(ctx context.Context, affected map[int]eventstore.Position, heads map[int]eventstore.Position) {
	for p := range affected {
		if _, ok := heads[p]; ok {
			continue
		}
		first, err := c.cfg.Redis.XRangeN(ctx, c.keys[p], "-", "+", 1).Result()
		if err != nil || len(first) == 0 {
			continue
		}
		if head, err := ParseEntryID(first[0].ID); err == nil {
			heads[p] = head
		}
	}
}

// latest is the last of the positions.
func latest(positions map[int]eventstore.Position) eventstore.Position {
	var last eventstore.Position
	for _, pos := range positions {
		if last.Before(pos) {
			last = pos
		}
	}
	return last
}

// catchUpEvent applies one stored event. An event whose predecessors are missing gets them
// from the store first (in the log, a later version can precede an earlier one when its
// transaction started first). A failing event is retried MaxDeliveries times, then
// dead-lettered like a failing entry, and the catch-up goes on. It gives up (returns an error)
// only when the database is unreachable or ctx is done, leaving the checkpoint where it was.
func (c *Consumer) catchUpEvent(ctx context.Context, p int, e eventstore.Event) (bool, error) {
	for attempt := 1; ; attempt++ {
		changed, err := Apply(ctx, c.cfg.DB, c.cfg.Projector, e, p)
		if err == nil {
			return changed, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if errors.Is(err, ErrOutOfOrder) {
			n, perr := c.applyPredecessors(ctx, e)
			c.stats.caughtUp.Add(int64(n))
			if perr == nil && attempt < c.cfg.MaxDeliveries {
				continue
			}
			if perr != nil {
				err = fmt.Errorf("%w; its predecessors from the event store: %w", err, perr)
			}
		}
		if c.databaseDown(ctx, err) {
			return false, err
		}
		if attempt >= c.cfg.MaxDeliveries {
			return false, c.deadLetterEvent(ctx, p, e, err, attempt)
		}
		c.stats.retries.Add(1)
		consumerSleep(ctx, c.cfg.RetryBackoff(attempt))
	}
}

// applyPredecessors applies, from the store and in version order, the events of e's stream the
// projector has not applied yet and that come before e, without moving any checkpoint. It
// returns how many changed the read model.
func (c *Consumer) applyPredecessors(ctx context.Context, e eventstore.Event) (int, error) {
	if e.StreamID == [16]byte{} {
		return 0, errors.New("no event")
	}
	if !reads(c.cfg.Projector, e.StreamType) {
		return 0, nil
	}
	var current int64
	err := c.cfg.DB.QueryRow(ctx, `SELECT version FROM projection_versions WHERE projector = $1 AND stream_id = $2`,
		c.group, e.StreamID).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("progress of %s: %w", e.StreamID, err)
	}
	if current >= e.Version-1 {
		return 0, nil
	}
	missing, err := eventstore.Load(ctx, c.cfg.DB, e.StreamID, eventstore.LoadOptions{AfterVersion: current, UpToVersion: e.Version - 1})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range missing {
		applied, err := Apply(ctx, c.cfg.DB, c.cfg.Projector, m, -1)
		if err != nil {
			return n, err
		}
		if applied {
			n++
		}
	}
	return n, nil
}

// deadLetterEvent records a stored event the catch-up could not apply in projection_dead_letters
// and moves the partition's checkpoint past it, in one transaction: settled (dead-lettered) means
// it has a row, so the checkpoint may not pass it without one. (Were the checkpoint not moved,
// every gap check would catch it up, and dead-letter it, again.)
func (c *Consumer) deadLetterEvent(ctx context.Context, p int, e eventstore.Event, cause error, attempts int) error {
	err := pgx.BeginFunc(ctx, c.cfg.DB, func(tx pgx.Tx) error {
		if err := recordDeadLetter(ctx, tx, eventDeadLetter(c.group, p, e, cause, attempts, time.Now())); err != nil {
			return err
		}
		return saveCheckpoint(ctx, tx, c.group, p, e.Position)
	})
	if err != nil {
		return fmt.Errorf("dead-letter event %s: %w", e.ID, err)
	}
	c.stats.deadLettered.Add(1)
	c.log.Error("event dead-lettered during catch-up", "partition", p, "event", e.ID, "type", e.Type,
		"stream", e.StreamID, "version", e.Version, "attempts", attempts, "err", cause)
	return nil
}

// checkpoints returns the projector's checkpoint of every partition (zero where none).
func (c *Consumer) checkpoints(ctx context.Context) ([]eventstore.Position, error) {
	out := make([]eventstore.Position, len(c.keys))
	rows, err := c.cfg.DB.Query(ctx, `SELECT partition, transaction_id::text::bigint, global_position
		FROM projection_checkpoints WHERE projector = $1`, c.group)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p int
		var tx, pos int64
		if err := rows.Scan(&p, &tx, &pos); err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		if p >= 0 && p < len(out) {
			out[p] = eventstore.Position{TransactionID: uint64(tx), GlobalPosition: pos}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

func (c *Consumer) groupExists(ctx context.Context, p int) (bool, error) {
	groups, err := c.cfg.Redis.XInfoGroups(ctx, c.keys[p]).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return false, nil
		}
		return false, fmt.Errorf("groups of %s: %w", c.keys[p], err)
	}
	for _, g := range groups {
		if g.Name == c.group {
			return true, nil
		}
	}
	return false, nil
}

// gapBefore reports whether partition p's stream starts beyond from with events of p in the
// store in between that the projector has not applied: entries trimmed (or lost) before the
// group read them. (Applied ones are common: the relay trims what the group acknowledged, and
// the checkpoint may lag behind that.)
func (c *Consumer) gapBefore(ctx context.Context, p int, from eventstore.Position) (bool, error) {
	first, err := c.cfg.Redis.XRangeN(ctx, c.keys[p], "-", "+", 1).Result()
	if err != nil || len(first) == 0 {
		return false, err
	}
	head, err := ParseEntryID(first[0].ID)
	if err != nil || !from.Before(head) {
		return false, nil // not a log position (not ours to judge), or nothing can be missing
	}
	// The events of p strictly between from and the stream's first entry. The range is short
	// unless entries really were lost; past a bound, assume they were.
	var between []eventstore.Event
	pos := from
	done := false
	for range 20 {
		events, err := eventstore.ReadAll(ctx, c.cfg.DB, pos, catchUpBatch)
		if err != nil {
			return false, err
		}
		for _, e := range events {
			if !e.Position.Before(head) {
				done = true
				break
			}
			if c.cfg.Streams.Partition(e.StreamID) == p {
				between = append(between, e)
			}
			pos = e.Position
		}
		if done || len(events) < catchUpBatch {
			done = true
			break
		}
	}
	if !done {
		return true, nil
	}
	missing, err := c.firstUnapplied(ctx, between)
	if err != nil || missing == nil {
		return false, err
	}
	c.log.Warn("stream starts after unapplied events", "partition", p, "first_entry", first[0].ID,
		"checkpoint", EntryID(from), "unapplied", EntryID(missing.Position))
	return true, nil
}

// firstUnapplied returns the first of events the projector reads and has not applied (nil if none).
func (c *Consumer) firstUnapplied(ctx context.Context, events []eventstore.Event) (*eventstore.Event, error) {
	if events = readBy(c.cfg.Projector, events); len(events) == 0 {
		return nil, nil
	}
	applied, err := streamVersions(ctx, c.cfg.DB, c.group, events, false)
	if err != nil {
		return nil, err
	}
	for i, e := range events {
		if e.Version > applied[e.StreamID] {
			return &events[i], nil
		}
	}
	return nil, nil
}

// createGroup creates partition p's group at the projector's checkpoint (MKSTREAM: the relay may
// not have published to the partition yet). Another consumer creating it first is fine.
func (c *Consumer) createGroup(ctx context.Context, p int) error {
	cps, err := c.checkpoints(ctx)
	if err != nil {
		return err
	}
	start := "0"
	if cps[p] != (eventstore.Position{}) {
		start = EntryID(cps[p])
	}
	err = c.cfg.Redis.XGroupCreateMkStream(ctx, c.keys[p], c.group, start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %s on %s: %w", c.group, c.keys[p], err)
	}
	if err == nil {
		c.log.Info("consumer group created", "partition", p, "at", start)
	}
	return nil
}
