package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// defaultStreamPartitions is billingd's STREAM_PARTITIONS when unset.
const defaultStreamPartitions = 8

// maxListed bounds the event ids one violation lists.
const maxListed = 5

// streamOnce: the Redis partition streams hold each stored event at most once, under its entry
// id (its log position), in its stream's partition, with the stored envelope, each aggregate's
// events in version order; and every stored event is there, unless it was trimmed or Redis was
// emptied after it was recorded.
//
// Trimmed or lost: the relay publishes in log order and trims (relay.Trim, XTRIM MINID) only
// below what every consumer group has acknowledged, always keeping the last delivered entry. So
// a partition's remaining entries are a suffix of what was published to it: an event missing
// from before the partition's first remaining entry was trimmed; one missing after it was lost.
// Besides, Redis counts every entry ever added to a stream (XINFO STREAM entries-added, which
// trimming does not lower): unless Redis was emptied, it must equal the number of stored events
// of the partition, which catches an event published twice even if both copies were trimmed.
func (c *checker) streamOnce(ctx context.Context) error {
	n := c.target.StreamPartitions
	if n <= 0 {
		n = defaultStreamPartitions
	}
	streams := projections.Streams{Prefix: c.target.RedisPrefix, Partitions: n}
	byID := make(map[uuid.UUID]eventstore.Event, len(c.store.events))
	storedIn := make([]int64, n)
	for _, e := range c.store.events {
		byID[e.ID] = e
		storedIn[streams.Partition(e.StreamID)]++
	}
	seen := make(map[uuid.UUID]string, len(c.store.events)) // event id → entry id
	first := make([]*eventstore.Position, n)                // each partition's first remaining entry
	for p := range n {
		key := streams.Key(p)
		lastVersion := map[uuid.UUID]int64{}
		var prev eventstore.Position
		err := xrangeAll(ctx, c.rdb, key, func(entry redis.XMessage) {
			e, err := projections.Decode(entry.ID, entry.Values)
			if err != nil {
				c.report(CheckStreamOnce, "%s: %v", key, err)
				return
			}
			if first[p] == nil {
				pos := e.Position
				if parsed, err := projections.ParseEntryID(entry.ID); err == nil {
					pos = parsed
				}
				first[p] = &pos
			}
			if want := projections.EntryID(e.Position); entry.ID != want {
				c.report(CheckStreamOnce, "%s: entry %s carries event %s of position %s", key, entry.ID, e.ID, want)
			}
			if !prev.Before(e.Position) {
				c.report(CheckStreamOnce, "%s: entry %s (position %v) after position %v", key, entry.ID, e.Position, prev)
			}
			prev = e.Position
			if got := streams.Partition(e.StreamID); got != p {
				c.report(CheckStreamOnce, "%s: event %s of stream %s belongs in partition %d", key, e.ID, e.StreamID, got)
			}
			if other, dup := seen[e.ID]; dup {
				c.report(CheckStreamOnce, "%s: event %s published twice, as entries %s and %s", key, e.ID, other, entry.ID)
			}
			seen[e.ID] = entry.ID
			if v, ok := lastVersion[e.StreamID]; ok && e.Version <= v {
				c.report(CheckStreamOnce, "%s: stream %s's version %d (entry %s) after its version %d", key, e.StreamID, e.Version, entry.ID, v)
			}
			lastVersion[e.StreamID] = max(lastVersion[e.StreamID], e.Version)
			stored, ok := byID[e.ID]
			if !ok {
				c.report(CheckStreamOnce, "%s: entry %s is event %s (%s v%d), which the store does not have", key, entry.ID, e.ID, e.StreamID, e.Version)
				return
			}
			if diff := envelopeDiff(e, stored); diff != "" {
				c.report(CheckStreamOnce, "%s: entry %s differs from the stored event %s: %s", key, entry.ID, e.ID, diff)
			}
		})
		if err != nil {
			return err
		}
		if c.target.RedisEmptiedAt.IsZero() {
			info, err := c.rdb.XInfoStream(ctx, key).Result()
			switch {
			case isNoSuchKey(err):
			case err != nil:
				return fmt.Errorf("check: XINFO STREAM %s: %w", key, err)
			case info.EntriesAdded != storedIn[p]:
				c.report(CheckStreamOnce, "%s: %d entries were ever added, for %d stored events of the partition", key, info.EntriesAdded, storedIn[p])
			}
		}
	}
	missing := make([][]string, n)
	for _, e := range c.store.events {
		if _, ok := seen[e.ID]; ok {
			continue
		}
		p := streams.Partition(e.StreamID)
		if first[p] != nil && e.Position.Before(*first[p]) {
			continue // trimmed
		}
		if !c.target.RedisEmptiedAt.IsZero() && e.RecordedAt.Before(c.target.RedisEmptiedAt) {
			continue // may have been published before Redis was emptied
		}
		missing[p] = append(missing[p], fmt.Sprintf("%s (%s %s v%d)", e.ID, e.Type, e.StreamID, e.Version))
	}
	for p, m := range missing {
		if len(m) > 0 {
			listed := m[:min(len(m), maxListed)]
			c.report(CheckStreamOnce, "%s: %d stored events missing after its first entry (lost, not trimmed): %s",
				streams.Key(p), len(m), strings.Join(listed, ", "))
		}
	}
	return nil
}

// xrangeAll calls fn with every entry of a stream, in order, a page at a time.
func xrangeAll(ctx context.Context, rdb *redis.Client, key string, fn func(redis.XMessage)) error {
	start := "-"
	for {
		page, err := rdb.XRangeN(ctx, key, start, "+", 1000).Result()
		if err != nil {
			return fmt.Errorf("check: XRANGE %s: %w", key, err)
		}
		for _, m := range page {
			fn(m)
		}
		if len(page) < 1000 {
			return nil
		}
		start = "(" + page[len(page)-1].ID
	}
}

// envelopeDiff names the first field in which a published event differs from the stored one.
func envelopeDiff(got, want eventstore.Event) string {
	switch {
	case got.Position != want.Position:
		return fmt.Sprintf("position %v, stored %v", got.Position, want.Position)
	case got.StreamID != want.StreamID || got.StreamType != want.StreamType || got.Version != want.Version:
		return fmt.Sprintf("%s %s v%d, stored %s %s v%d", got.StreamType, got.StreamID, got.Version, want.StreamType, want.StreamID, want.Version)
	case got.Type != want.Type || got.SchemaVersion != want.SchemaVersion:
		return fmt.Sprintf("%s v%d, stored %s v%d", got.Type, got.SchemaVersion, want.Type, want.SchemaVersion)
	case string(got.Data) != string(want.Data):
		return fmt.Sprintf("data %s, stored %s", got.Data, want.Data)
	case got.Metadata != want.Metadata:
		return fmt.Sprintf("metadata %+v, stored %+v", got.Metadata, want.Metadata)
	case !got.OccurredAt.Equal(want.OccurredAt) || !got.RecordedAt.Equal(want.RecordedAt):
		return fmt.Sprintf("times %s/%s, stored %s/%s", got.OccurredAt, got.RecordedAt, want.OccurredAt, want.RecordedAt)
	}
	return ""
}

func isNoSuchKey(err error) bool {
	return err != nil && (errors.Is(err, redis.Nil) || strings.Contains(err.Error(), "no such key"))
}
