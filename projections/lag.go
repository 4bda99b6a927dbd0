package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
)

// GroupLag is how far one consumer group is behind what is in Redis, and what it gave up on.
type GroupLag struct {
	// Entries in the partitions not yet delivered to the group; for a partition whose group is
	// missing, the stored events of the partition after the projector's checkpoint, and for one
	// whose lag Redis cannot tell, those after the group's last delivered entry.
	Undelivered int64
	Pending     int64 // delivered, not yet acknowledged
	// The group's rows in projection_dead_letters: counted from PostgreSQL, so they stay counted
	// when Redis loses its data.
	DeadLetters int64
	Oldest      time.Duration // age (by recorded_at) of the oldest entry not yet acknowledged; 0 if none
}

// Lag measures a consumer group over all partitions. Where the group (or its stream) is
// missing, Redis lost it and the consumer catches up from the event store before it creates the
// group again: what it has left to apply there is counted from the store (the partition's
// events after its checkpoint), not as nothing. Counting a missing group as caught up once made
// GET /v1/pipeline/status report lag 0 while a projector was 40 s behind (TestChaosRedisEmptied).
//
// Where Redis cannot tell a group's lag (XINFO GROUPS answers lag NULL for a group created at an
// id of the consumer's choosing, as it is after a catch-up, until it has read to the stream's
// end), the entries after the group's last delivered one are counted from the store too: their
// ids are the events' positions. Taken as 0, it once let the fault suite settle, and check the
// read models, while a projector still had entries to read (TestChaosFaultsTogether).
func Lag(ctx context.Context, db eventstore.Querier, rdb *redis.Client, streams Streams, group string, now time.Time) (GroupLag, error) {
	var lag GroupLag
	var oldest *eventstore.Position
	from := map[int]*eventstore.Position{} // partitions counted from the store: after this (nil: the checkpoint)
	for p := range streams.Partitions {
		key := streams.Key(p)
		groups, err := rdb.XInfoGroups(ctx, key).Result()
		if err != nil && !isMissing(err) {
			return lag, fmt.Errorf("groups of %s: %w", key, err)
		}
		if !slices.ContainsFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == group }) {
			from[p] = nil
		}
		for _, g := range groups {
			if g.Name != group {
				continue
			}
			if g.Lag >= 0 {
				lag.Undelivered += g.Lag
			} else {
				delivered, err := ParseEntryID(g.LastDeliveredID)
				if err != nil {
					return lag, fmt.Errorf("group %s of %s: %w", group, key, err)
				}
				from[p] = &delivered
			}
			lag.Pending += g.Pending
			first, err := firstUnacked(ctx, rdb, key, g)
			if err != nil {
				return lag, err
			}
			if first != nil && (oldest == nil || first.Before(*oldest)) {
				oldest = first
			}
		}
	}
	if len(from) > 0 {
		n, err := undeliveredInStore(ctx, db, streams, group, from)
		if err != nil {
			return lag, err
		}
		lag.Undelivered += n
	}
	n, err := CountDeadLetters(ctx, db, group)
	if err != nil {
		return lag, err
	}
	lag.DeadLetters = n
	if oldest != nil {
		var recorded time.Time
		err := db.QueryRow(ctx, `SELECT recorded_at FROM events WHERE global_position = $1`, oldest.GlobalPosition).Scan(&recorded)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return lag, err
		}
		if err == nil && now.After(recorded) {
			lag.Oldest = now.Sub(recorded)
		}
	}
	return lag, nil
}

// firstUnacked is the position of the group's oldest pending entry, else of the first entry it
// has not been delivered, else nil.
func firstUnacked(ctx context.Context, rdb *redis.Client, key string, g redis.XInfoGroup) (*eventstore.Position, error) {
	id := ""
	if g.Pending > 0 {
		pending, err := rdb.XPending(ctx, key, g.Name).Result()
		if err != nil {
			return nil, fmt.Errorf("pending of %s/%s: %w", key, g.Name, err)
		}
		id = pending.Lower
	} else if g.Lag != 0 { // some undelivered, or unknown (-1)
		next, err := rdb.XRangeN(ctx, key, "("+g.LastDeliveredID, "+", 1).Result()
		if err != nil {
			return nil, fmt.Errorf("next entry of %s: %w", key, err)
		}
		if len(next) > 0 {
			id = next[0].ID
		}
	}
	if id == "" {
		return nil, nil
	}
	pos, err := ParseEntryID(id)
	if err != nil {
		return nil, err
	}
	return &pos, nil
}

// lagScanLimit bounds the events undeliveredInStore reads: past it the count is a lower bound,
// which still says the projector is behind.
const lagScanLimit = 100_000

// undeliveredInStore counts the stored events of the partitions in after, each after its
// position there (nil: the projector's checkpoint of the partition).
func undeliveredInStore(ctx context.Context, db eventstore.Querier, streams Streams, projector string,
	after map[int]*eventstore.Position) (int64, error) {
	checkpoints := make([]eventstore.Position, streams.Partitions)
	counted := make([]bool, streams.Partitions)
	var from *eventstore.Position
	for p, pos := range after {
		if pos == nil {
			cp, err := Checkpoint(ctx, db, projector, p)
			if err != nil {
				return 0, fmt.Errorf("checkpoint of %s partition %d: %w", projector, p, err)
			}
			pos = &cp
		}
		checkpoints[p], counted[p] = *pos, true
		if from == nil || pos.Before(*from) {
			from = pos
		}
	}
	rows, err := db.Query(ctx, `SELECT stream_id, transaction_id::text::bigint, global_position FROM events
		WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2::bigint) LIMIT $3`,
		int64(from.TransactionID), from.GlobalPosition, lagScanLimit)
	if err != nil {
		return 0, fmt.Errorf("events after %s: %w", EntryID(*from), err)
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		var id uuid.UUID
		var tx int64
		var pos eventstore.Position
		if err := rows.Scan(&id, &tx, &pos.GlobalPosition); err != nil {
			return 0, fmt.Errorf("events after %s: %w", EntryID(*from), err)
		}
		pos.TransactionID = uint64(tx)
		if p := streams.Partition(id); counted[p] && checkpoints[p].Before(pos) {
			n++
		}
	}
	return n, rows.Err()
}

func isMissing(err error) bool {
	return errors.Is(err, redis.Nil) || err.Error() == "ERR no such key"
}
