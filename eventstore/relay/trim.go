package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// Trim removes from each partition the entries every consumer group is done with: below the
// oldest entry some group still has pending (delivered, not acknowledged), and not past what any
// group has been delivered. A stream without groups is left alone (only MAXLEN caps it), and so
// is a stream that lacks one of the required groups (the projectors' groups): Redis lost it,
// and its consumer is catching up from the event store up to the stream's first entry, then
// creates it there; trimmed on the other groups' progress meanwhile, the stream would start
// further on each time, and a lagging projector's catch-up would chase it.
func Trim(ctx context.Context, rdb *redis.Client, streams projections.Streams, required ...string) error {
	for p := range streams.Partitions {
		key := streams.Key(p)
		minID, ok, err := safeMinID(ctx, rdb, key, required)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := rdb.XTrimMinIDApprox(ctx, key, minID, 0).Err(); err != nil {
			return fmt.Errorf("trim %s: %w", key, err)
		}
	}
	return nil
}

// safeMinID computes the MINID that keeps every entry some group still needs.
// It reports false when nothing may be trimmed.
func safeMinID(ctx context.Context, rdb *redis.Client, key string, required []string) (string, bool, error) {
	groups, err := rdb.XInfoGroups(ctx, key).Result()
	if err != nil {
		if isNoSuchKey(err) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("groups of %s: %w", key, err)
	}
	if len(groups) == 0 {
		return "", false, nil
	}
	for _, name := range required {
		if !slices.ContainsFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == name }) {
			return "", false, nil
		}
	}
	var min eventstore.Position
	found := false
	for _, g := range groups {
		// Keep the last delivered entry itself: conservative, and "0-0" keeps everything.
		keep := g.LastDeliveredID
		if g.Pending > 0 {
			pending, err := rdb.XPending(ctx, key, g.Name).Result()
			if err != nil {
				return "", false, fmt.Errorf("pending of %s/%s: %w", key, g.Name, err)
			}
			keep = pending.Lower
		}
		pos, err := projections.ParseEntryID(keep)
		if err != nil {
			return "", false, err
		}
		if !found || pos.Before(min) {
			min, found = pos, true
		}
	}
	return projections.EntryID(min), found, nil
}

func isNoSuchKey(err error) bool {
	return err != nil && (errors.Is(err, redis.Nil) || err.Error() == "ERR no such key")
}
