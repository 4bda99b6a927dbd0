// Package projections carries events from Redis Streams into the CQRS read models the
// dashboard queries. The relay (eventstore/relay) publishes every stored event to one of N
// partition streams; each projector reads them through its own consumer group and applies each
// event exactly once, recording its progress in the same Postgres transaction as its change.
package projections

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/eventstore"
)

// Streams names the Redis keys of the event pipeline. Events are partitioned by a hash of their
// stream id, so one subscription's events stay in order in one partition while the partitions
// spread the load across consumers. (One stream per event type would race a subscription's
// "created" against its "plan_changed".)
type Streams struct {
	Prefix     string // prepended to every key, e.g. "billing:" (tests use their own)
	Partitions int    // N: partition streams are <prefix>events:0 … <prefix>events:N-1
}

// Partition returns the partition of an event stream.
func (s Streams) Partition(streamID uuid.UUID) int {
	h := fnv.New32a()
	h.Write(streamID[:])
	return int(h.Sum32() % uint32(s.Partitions))
}

// Key returns the Redis key of partition p.
func (s Streams) Key(p int) string { return fmt.Sprintf("%sevents:%d", s.Prefix, p) }

// EntryID is the Redis stream entry id of an event: its global log position
// "<transaction_id>-<global_position>". The relay publishes in log order, so ids are strictly
// increasing within every partition, and a repeated XADD of an already published event is
// refused by Redis: the stream can never hold an event twice.
func EntryID(p eventstore.Position) string {
	return strconv.FormatUint(p.TransactionID, 10) + "-" + strconv.FormatInt(p.GlobalPosition, 10)
}

// ParseEntryID is the inverse of EntryID.
func ParseEntryID(id string) (eventstore.Position, error) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			tx, err1 := strconv.ParseUint(id[:i], 10, 64)
			pos, err2 := strconv.ParseInt(id[i+1:], 10, 64)
			if err1 != nil || err2 != nil {
				break
			}
			return eventstore.Position{TransactionID: tx, GlobalPosition: pos}, nil
		}
	}
	return eventstore.Position{}, fmt.Errorf("entry id %q is not <transaction_id>-<global_position>", id)
}

// Encode turns an event into the fields of its stream entry: the whole envelope, so a consumer
// needs nothing else to apply it.
func Encode(e eventstore.Event) map[string]any {
	meta, _ := json.Marshal(e.Metadata)
	return map[string]any{
		"event_id":        e.ID.String(),
		"stream_id":       e.StreamID.String(),
		"stream_type":     e.StreamType,
		"version":         e.Version,
		"type":            e.Type,
		"schema_version":  e.SchemaVersion,
		"data":            string(e.Data),
		"metadata":        string(meta),
		"occurred_at":     e.OccurredAt.Format(time.RFC3339Nano),
		"recorded_at":     e.RecordedAt.Format(time.RFC3339Nano),
		"global_position": e.Position.GlobalPosition,
		"transaction_id":  e.Position.TransactionID,
	}
}

// Decode reads an event back from its stream entry.
func Decode(id string, values map[string]any) (eventstore.Event, error) {
	var e eventstore.Event
	get := func(k string) string { s, _ := values[k].(string); return s }
	var err error
	fail := func(field string, cause error) (eventstore.Event, error) {
		return eventstore.Event{}, fmt.Errorf("entry %s: field %s: %w", id, field, cause)
	}
	if e.ID, err = uuid.Parse(get("event_id")); err != nil {
		return fail("event_id", err)
	}
	if e.StreamID, err = uuid.Parse(get("stream_id")); err != nil {
		return fail("stream_id", err)
	}
	if e.Version, err = strconv.ParseInt(get("version"), 10, 64); err != nil {
		return fail("version", err)
	}
	if e.SchemaVersion, err = strconv.Atoi(get("schema_version")); err != nil {
		return fail("schema_version", err)
	}
	if e.Position.GlobalPosition, err = strconv.ParseInt(get("global_position"), 10, 64); err != nil {
		return fail("global_position", err)
	}
	if e.Position.TransactionID, err = strconv.ParseUint(get("transaction_id"), 10, 64); err != nil {
		return fail("transaction_id", err)
	}
	// The relay publishes each event under its position. The consumer acknowledges and orders by
	// the id and checkpoints by the fields: an entry on which they disagree was not written by the
	// relay, and applying it could move a checkpoint past events not yet applied.
	if want := EntryID(e.Position); id != want {
		return fail("global_position", fmt.Errorf("the event's position %s is not the entry's id", want))
	}
	if e.OccurredAt, err = time.Parse(time.RFC3339Nano, get("occurred_at")); err != nil {
		return fail("occurred_at", err)
	}
	if e.RecordedAt, err = time.Parse(time.RFC3339Nano, get("recorded_at")); err != nil {
		return fail("recorded_at", err)
	}
	if err = json.Unmarshal([]byte(get("metadata")), &e.Metadata); err != nil {
		return fail("metadata", err)
	}
	e.StreamType, e.Type, e.Data = get("stream_type"), get("type"), json.RawMessage(get("data"))
	if e.Type == "" || len(e.Data) == 0 {
		return fail("type/data", fmt.Errorf("missing"))
	}
	return e, nil
}
