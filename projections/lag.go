package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
)

// GroupLag is how far one consumer group is behind what is in Redis.
type GroupLag struct {
	Undelivered int64         // entries in the partitions not yet delivered to the group
	Pending     int64         // delivered, not yet acknowledged
	DeadLetters int64         // entries in the group's dead-letter stream
	Oldest      time.Duration // age (by recorded_at) of the oldest entry not yet acknowledged; 0 if none
}

// Lag measures a consumer group over all partitions. A missing stream or group counts as
// nothing in Redis (the consumer then catches up from the event store, and the relay's lag
// shows what is unpublished).
func Lag(ctx context.Context, db eventstore.Querier, rdb *redis.Client, streams Streams, group string, now time.Time) (GroupLag, error) {
	var lag GroupLag
	var oldest *eventstore.Position
	for p := range streams.Partitions {
		key := streams.Key(p)
		groups, err := rdb.XInfoGroups(ctx, key).Result()
		if err != nil && !isMissing(err) {
			return lag, fmt.Errorf("groups of %s: %w", key, err)
		}
		for _, g := range groups {
			if g.Name != group {
				continue
			}
			lag.Undelivered += max(g.Lag, 0)
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
	n, err := rdb.XLen(ctx, streams.DeadLetterKey(group)).Result()
	if err != nil && !isMissing(err) {
		return lag, fmt.Errorf("dead letters of %s: %w", group, err)
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
	} else if g.Lag > 0 {
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

func isMissing(err error) bool {
	return errors.Is(err, redis.Nil) || err.Error() == "ERR no such key"
}
