package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
)

// A dead letter is an entry a projector could not apply after MaxDeliveries deliveries (or an
// event a catch-up could not apply). It sits in the group's dead-letter stream
// (Streams.DeadLetterKey) with the original envelope's fields plus these:
const (
	dlError      = "error"      // the last failure
	dlDeliveries = "deliveries" // how many times it was delivered (tried)
	dlPartition  = "partition"  // the partition it came from
	dlEntryID    = "entry_id"   // its id there: the event's log position
	dlFailedAt   = "failed_at"  // when it was dead-lettered (RFC 3339)
	dlGroup      = "group"      // the consumer group (projector)
)

func deadLetterFields(original map[string]any, cause error, deliveries int64, partition int, entryID, group string, now time.Time) map[string]any {
	fields := make(map[string]any, len(original)+6)
	for k, v := range original {
		fields[k] = v
	}
	msg := "unknown error"
	if cause != nil {
		msg = cause.Error()
	}
	fields[dlError] = msg
	fields[dlDeliveries] = deliveries
	fields[dlPartition] = partition
	fields[dlEntryID] = entryID
	fields[dlFailedAt] = now.UTC().Format(time.RFC3339Nano)
	fields[dlGroup] = group
	return fields
}

// DeadLetter is one entry of a dead-letter stream. Fields the entry lacks or that do not parse
// are left zero (a payload that could not be decoded is a reason to be dead-lettered).
type DeadLetter struct {
	ID         string // id in the dead-letter stream
	Group      string
	Partition  int
	EntryID    string // id in the partition stream: the event's log position
	EventID    uuid.UUID
	Type       string
	StreamID   uuid.UUID
	Version    int64
	Error      string
	Deliveries int64
	FailedAt   time.Time
}

func parseDeadLetter(m redis.XMessage) DeadLetter {
	get := func(k string) string { s, _ := m.Values[k].(string); return s }
	d := DeadLetter{ID: m.ID, Group: get(dlGroup), EntryID: get(dlEntryID), Type: get("type"), Error: get(dlError)}
	d.Partition, _ = strconv.Atoi(get(dlPartition))
	d.EventID, _ = uuid.Parse(get("event_id"))
	d.StreamID, _ = uuid.Parse(get("stream_id"))
	d.Version, _ = strconv.ParseInt(get("version"), 10, 64)
	d.Deliveries, _ = strconv.ParseInt(get(dlDeliveries), 10, 64)
	d.FailedAt, _ = time.Parse(time.RFC3339Nano, get(dlFailedAt))
	return d
}

// ListDeadLetters returns up to limit (all if limit <= 0) of a group's dead letters, oldest first.
func ListDeadLetters(ctx context.Context, rdb *redis.Client, streams Streams, group string, limit int) ([]DeadLetter, error) {
	key := streams.DeadLetterKey(group)
	var msgs []redis.XMessage
	var err error
	if limit > 0 {
		msgs, err = rdb.XRangeN(ctx, key, "-", "+", int64(limit)).Result()
	} else {
		msgs, err = rdb.XRange(ctx, key, "-", "+").Result()
	}
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %s: %w", group, err)
	}
	out := make([]DeadLetter, len(msgs))
	for i, m := range msgs {
		out[i] = parseDeadLetter(m)
	}
	return out, nil
}

// ErrNotDeadLettered is a RedriveResult's error for an id that is not in the dead-letter stream.
var ErrNotDeadLettered = errors.New("no such entry in the dead-letter stream")

// RedriveResult says what became of one dead letter.
type RedriveResult struct {
	DeadLetter
	Applied bool  // the event changed the read model (false with Err nil: it was already applied)
	Err     error // nil: applied or already applied, and removed from the dead-letter stream
}

// Redrive applies dead letters again (the given ids of p's dead-letter stream, or all of them):
// each event is loaded from the event store by its id (the source of truth, not the copy in
// Redis) and applied with Apply, without moving any partition checkpoint. On success the dead
// letter is deleted; on failure it stays, and its result carries the error. Entries are tried
// in stream order, and those refused as out of order are tried again after the others as long
// as that makes progress, so a stream's dead-lettered versions can be redriven together.
// The error is for failures to reach Redis; per-entry failures are in the results.
func Redrive(ctx context.Context, db *pgxpool.Pool, rdb *redis.Client, streams Streams, p Projector, ids ...string) ([]RedriveResult, error) {
	key := streams.DeadLetterKey(p.Name())
	var results []RedriveResult
	if len(ids) == 0 {
		msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			return nil, fmt.Errorf("read dead letters of %s: %w", p.Name(), err)
		}
		for _, m := range msgs {
			results = append(results, RedriveResult{DeadLetter: parseDeadLetter(m)})
		}
	} else {
		for _, id := range ids {
			msgs, err := rdb.XRange(ctx, key, id, id).Result()
			if err != nil {
				return nil, fmt.Errorf("read dead letter %s of %s: %w", id, p.Name(), err)
			}
			if len(msgs) == 0 {
				results = append(results, RedriveResult{DeadLetter: DeadLetter{ID: id}, Err: ErrNotDeadLettered})
				continue
			}
			results = append(results, RedriveResult{DeadLetter: parseDeadLetter(msgs[0])})
		}
	}

	remaining := make([]int, 0, len(results))
	for i := range results {
		if results[i].Err == nil {
			remaining = append(remaining, i)
		}
	}
	for len(remaining) > 0 {
		var again []int
		progress := false
		for _, i := range remaining {
			r := &results[i]
			r.Err = nil
			e, err := loadDeadEvent(ctx, db, r.DeadLetter)
			if err == nil {
				r.Applied, err = Apply(ctx, db, p, e, -1)
			}
			if err != nil {
				r.Err = err
				if errors.Is(err, ErrOutOfOrder) {
					again = append(again, i)
				}
				continue
			}
			progress = true
			if err := rdb.XDel(ctx, key, r.ID).Err(); err != nil {
				r.Err = fmt.Errorf("applied, but not removed from the dead-letter stream: %w", err)
			}
		}
		if !progress {
			break
		}
		remaining = again
	}
	return results, nil
}

// loadDeadEvent reads a dead letter's event from the event store: by its event id, or failing
// that (an envelope too broken to name it) by its position, which its entry id is.
func loadDeadEvent(ctx context.Context, db *pgxpool.Pool, d DeadLetter) (eventstore.Event, error) {
	if d.EventID != uuid.Nil {
		var streamID uuid.UUID
		var version int64
		err := db.QueryRow(ctx, `SELECT stream_id, version FROM events WHERE event_id = $1`, d.EventID).Scan(&streamID, &version)
		if errors.Is(err, pgx.ErrNoRows) {
			return eventstore.Event{}, fmt.Errorf("event %s is not in the event store", d.EventID)
		}
		if err != nil {
			return eventstore.Event{}, fmt.Errorf("find event %s: %w", d.EventID, err)
		}
		events, err := eventstore.Load(ctx, db, streamID, eventstore.LoadOptions{AfterVersion: version - 1, UpToVersion: version})
		if err != nil {
			return eventstore.Event{}, err
		}
		if len(events) != 1 {
			return eventstore.Event{}, fmt.Errorf("event %s: stream %s has no version %d", d.EventID, streamID, version)
		}
		return events[0], nil
	}
	pos, err := ParseEntryID(d.EntryID)
	if err != nil || pos.GlobalPosition < 1 {
		return eventstore.Event{}, fmt.Errorf("dead letter %s names no event (no event_id, entry_id %q)", d.ID, d.EntryID)
	}
	events, err := eventstore.ReadAll(ctx, db, eventstore.Position{TransactionID: pos.TransactionID, GlobalPosition: pos.GlobalPosition - 1}, 1)
	if err != nil {
		return eventstore.Event{}, err
	}
	if len(events) == 0 || events[0].Position != pos {
		return eventstore.Event{}, fmt.Errorf("dead letter %s: no event at position %s in the event store", d.ID, d.EntryID)
	}
	return events[0], nil
}
