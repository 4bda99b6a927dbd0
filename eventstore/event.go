// Package eventstore is the append-only PostgreSQL event store: the source of truth and the
// audit log. It appends events to streams under optimistic concurrency, loads streams, and reads
// the global log in a gap-free order that tailing readers can checkpoint.
package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs SQL: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx. Taking it lets a caller append in
// its own transaction, together with other writes that must commit atomically with the events.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Stream names one event stream: the history of one aggregate.
type Stream struct {
	ID   uuid.UUID
	Type string // e.g. "subscription"
}

// Metadata says who caused an event and why. It is stored as jsonb beside the event's data.
type Metadata struct {
	CorrelationID  string `json:"correlation_id,omitempty"`
	CausationID    string `json:"causation_id,omitempty"`
	Actor          string `json:"actor,omitempty"`
	Source         string `json:"source,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// NewEvent is an event about to be appended.
type NewEvent struct {
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	OccurredAt    time.Time
}

// Event is a recorded event.
type Event struct {
	Position      Position
	StreamID      uuid.UUID
	StreamType    string
	Version       int64
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	OccurredAt    time.Time
	RecordedAt    time.Time
}

// Position is an event's place in the global log. GlobalPosition identifies the event; the log
// is ordered by (TransactionID, GlobalPosition), which is the order in which events become
// safely visible to readers (see reader.go).
type Position struct {
	TransactionID  uint64
	GlobalPosition int64
}

// Before reports whether p sorts before q in the global log.
func (p Position) Before(q Position) bool {
	if p.TransactionID != q.TransactionID {
		return p.TransactionID < q.TransactionID
	}
	return p.GlobalPosition < q.GlobalPosition
}

// eventColumns is the select list scanEvent reads, in order.
const eventColumns = `global_position, transaction_id::text::bigint, stream_id, stream_type, version,
	event_id, type, schema_version, data, metadata, occurred_at, recorded_at`

// scanEvent reads one row. The metadata is decoded here rather than by the driver, so that
// metadata of the wrong shape is an *UnreadableEventError naming the event, like bad data.
func scanEvent(row pgx.Row) (Event, error) {
	var e Event
	var txid int64
	var metadata []byte
	err := row.Scan(&e.Position.GlobalPosition, &txid, &e.StreamID, &e.StreamType, &e.Version,
		&e.ID, &e.Type, &e.SchemaVersion, &e.Data, &metadata, &e.OccurredAt, &e.RecordedAt)
	if err != nil {
		return Event{}, err
	}
	e.Position.TransactionID = uint64(txid)
	e.OccurredAt, e.RecordedAt = e.OccurredAt.UTC(), e.RecordedAt.UTC()
	if err := json.Unmarshal(metadata, &e.Metadata); err != nil {
		return Event{}, &UnreadableEventError{EventID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion,
			StreamID: e.StreamID, StreamVersion: e.Version, Err: fmt.Errorf("metadata: %w", err)}
	}
	return e, nil
}

func collectEvents(rows pgx.Rows) ([]Event, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) { return scanEvent(r) })
}
