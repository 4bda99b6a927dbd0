package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// appendSQL inserts a batch of events for one stream in one statement, so the batch is atomic
// even outside an explicit transaction. The WHERE clause checks the expected version before any
// row reaches the INSERT, so a stale append is refused without taking identity (sequence)
// values. Two appenders that both pass the check race on the (stream_id, version) unique index:
// the loser waits for the winner to commit and then fails with 23505, turned into the same
// *ConcurrencyError below.
//
// The WHERE clause (atExpected) also refuses to append after a version written by a younger
// transaction: the global log is ordered by transaction id first (reader.go), so a transaction
// that took its id before the one that wrote version n (by writing something else first) and
// then appended version n+1 would put n+1 before n in the log, and the relay would publish a
// stream's events out of order. Refused as a concurrency conflict, the command is retried in a
// new transaction, whose id is younger than every committed one.
const appendSQL = `
INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
SELECT $1, $2, $3 + e.ord, e.event_id, e.type, e.schema_version, e.data, e.metadata, e.occurred_at
FROM unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[], $8::jsonb[], $9::timestamptz[])
     WITH ORDINALITY AS e(event_id, type, schema_version, data, metadata, occurred_at, ord)
WHERE ` + atExpected + `
ORDER BY e.ord
RETURNING global_position, transaction_id::text::bigint, version, recorded_at`

// atExpected holds when stream $1's last version is $3 (0: the stream is new) and that version
// was not written by a transaction younger than this one (the same one may append again): one
// backward step on the (stream_id, version) index reads both.
const atExpected = `coalesce((SELECT version = $3 AND transaction_id <= pg_current_xact_id()
	FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1), $3 = 0)`

// appendOneSQL is appendSQL for the common single event, without the arrays: cheaper to encode
// and to plan.
const appendOneSQL = `
INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
SELECT $1, $2, $3 + 1, $4, $5, $6, $7, $8, $9
WHERE ` + atExpected + `
RETURNING global_position, transaction_id::text::bigint, version, recorded_at`

// Append appends events to a stream that must be at version expected (0 for a new stream) and
// returns them as recorded. It runs one statement on q; pass a transaction to commit other
// writes atomically with the events.
func Append(ctx context.Context, q Querier, stream Stream, expected int64, events []NewEvent) ([]Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	n := len(events)
	ids, types, versions := make([]uuid.UUID, n), make([]string, n), make([]int32, n)
	data, metas, times := make([][]byte, n), make([]Metadata, n), make([]time.Time, n)
	for i, e := range events {
		if e.Type == "" || e.SchemaVersion < 1 || len(e.Data) == 0 || e.OccurredAt.IsZero() {
			return nil, fmt.Errorf("append to %s: event %d is incomplete (type %q, schema version %d)", stream.ID, i, e.Type, e.SchemaVersion)
		}
		ids[i], types[i], versions[i] = e.ID, e.Type, int32(e.SchemaVersion)
		data[i], metas[i], times[i] = e.Data, e.Metadata, e.OccurredAt.UTC()
		if ids[i] == uuid.Nil {
			ids[i] = uuid.Must(uuid.NewV7())
		}
	}

	var rows pgx.Rows
	var err error
	if n == 1 {
		rows, err = q.Query(ctx, appendOneSQL, stream.ID, stream.Type, expected, ids[0], types[0], versions[0], data[0], metas[0], times[0])
	} else {
		rows, err = q.Query(ctx, appendSQL, stream.ID, stream.Type, expected, ids, types, versions, data, metas, times)
	}
	if err != nil {
		return nil, appendError(stream, expected, err)
	}
	defer rows.Close()
	recorded := make([]Event, 0, n)
	for rows.Next() {
		i := len(recorded)
		e := Event{StreamID: stream.ID, StreamType: stream.Type, ID: ids[i], Type: types[i],
			SchemaVersion: int(versions[i]), Data: data[i], Metadata: metas[i], OccurredAt: times[i]}
		var txid int64
		if err := rows.Scan(&e.Position.GlobalPosition, &txid, &e.Version, &e.RecordedAt); err != nil {
			return nil, fmt.Errorf("append to %s: %w", stream.ID, err)
		}
		e.Position.TransactionID, e.RecordedAt = uint64(txid), e.RecordedAt.UTC()
		recorded = append(recorded, e)
	}
	if err := rows.Err(); err != nil {
		return nil, appendError(stream, expected, err)
	}
	if len(recorded) == 0 {
		actual, err := StreamVersion(ctx, q, stream.ID)
		if err != nil {
			return nil, fmt.Errorf("append to %s: read version after conflict: %w", stream.ID, err)
		}
		if actual == expected { // refused by atExpected: a younger transaction wrote that version
			actual = -1
		}
		return nil, &ConcurrencyError{StreamID: stream.ID, Expected: expected, Actual: actual}
	}
	return recorded, nil
}

// appendManySQL appends to several streams in one statement. The uncorrelated NOT EXISTS is
// evaluated once, before any row is inserted: if any stream is not at its expected version, or
// its version was written by a younger transaction (see appendSQL), nothing is inserted (and no
// identity value taken). Writers that pass the check together still race on the (stream_id,
// version) unique index, as in appendSQL. Each stream's check is atExpected's one backward index
// step: checked with an EXISTS of its own, the younger-writer test could be planned as a hashed
// subplan, a scan of the whole log per append when the table's statistics are stale.
const appendManySQL = `
INSERT INTO events (stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
SELECT e.stream_id, e.stream_type, e.version, e.event_id, e.type, e.schema_version, e.data, e.metadata, e.occurred_at
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], $7::jsonb[], $8::jsonb[], $9::timestamptz[])
     WITH ORDINALITY AS e(stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at, ord)
WHERE NOT EXISTS (
    SELECT FROM unnest($10::uuid[], $11::bigint[]) AS s(stream_id, expected)
    WHERE NOT coalesce((SELECT version = s.expected AND transaction_id <= pg_current_xact_id()
                        FROM events WHERE stream_id = s.stream_id ORDER BY version DESC LIMIT 1), s.expected = 0))
ORDER BY e.ord
RETURNING global_position, transaction_id::text::bigint, version, recorded_at`

// StreamAppend is events to append to one stream that must be at version Expected.
type StreamAppend struct {
	Stream   Stream
	Expected int64
	Events   []NewEvent
}

// AppendMany appends to several distinct streams in one statement, hence atomically: all the
// events or none. It is how the events of many commands (group commit) are written in one round
// trip. A stream not at its expected version fails the whole append with a *ConcurrencyError.
// The recorded events are returned in the order given.
func AppendMany(ctx context.Context, q Querier, appends []StreamAppend) ([]Event, error) {
	m, err := newManyAppend(appends)
	if err != nil || m == nil {
		return nil, err
	}
	rows, err := q.Query(ctx, appendManySQL, m.args()...)
	if err != nil {
		return nil, appendManyError(err)
	}
	if err := m.scan(rows); err != nil {
		return nil, err
	}
	return m.result(ctx, q)
}

// QueueAppendMany queues AppendMany's statement on b, to travel with b's other statements in one
// round trip. Once b has been sent without error, done returns what AppendMany would have: the
// recorded events, or its *ConcurrencyError (it may read the streams' versions to say which is
// stale, so q must be the transaction b was sent in).
func QueueAppendMany(b *pgx.Batch, appends []StreamAppend) (done func(ctx context.Context, q Querier) ([]Event, error), err error) {
	m, err := newManyAppend(appends)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return func(context.Context, Querier) ([]Event, error) { return nil, nil }, nil
	}
	b.Queue(appendManySQL, m.args()...).Query(m.scan)
	return m.result, nil
}

// manyAppend is the statement of an AppendMany and, once run, what it recorded.
type manyAppend struct {
	streamIDs, ids     []uuid.UUID
	streamTypes, types []string
	versions           []int64
	schemaVersions     []int32
	data               [][]byte
	metas              []Metadata
	times              []time.Time
	checkIDs           []uuid.UUID
	checkVersions      []int64
	recorded           []Event
}

// newManyAppend checks appends and lays them out as appendManySQL's arguments; nil if there is
// no event to append.
func newManyAppend(appends []StreamAppend) (*manyAppend, error) {
	m := &manyAppend{checkIDs: make([]uuid.UUID, 0, len(appends)), checkVersions: make([]int64, 0, len(appends))}
	seen := make(map[uuid.UUID]bool, len(appends))
	for _, a := range appends {
		if len(a.Events) == 0 {
			continue
		}
		if seen[a.Stream.ID] {
			return nil, fmt.Errorf("append to %s: the stream is given twice", a.Stream.ID)
		}
		seen[a.Stream.ID] = true
		m.checkIDs, m.checkVersions = append(m.checkIDs, a.Stream.ID), append(m.checkVersions, a.Expected)
		for i, e := range a.Events {
			if e.Type == "" || e.SchemaVersion < 1 || len(e.Data) == 0 || e.OccurredAt.IsZero() {
				return nil, fmt.Errorf("append to %s: event %d is incomplete (type %q, schema version %d)", a.Stream.ID, i, e.Type, e.SchemaVersion)
			}
			id := e.ID
			if id == uuid.Nil {
				id = uuid.Must(uuid.NewV7())
			}
			m.streamIDs, m.streamTypes, m.versions = append(m.streamIDs, a.Stream.ID), append(m.streamTypes, a.Stream.Type), append(m.versions, a.Expected+int64(i)+1)
			m.ids, m.types, m.schemaVersions = append(m.ids, id), append(m.types, e.Type), append(m.schemaVersions, int32(e.SchemaVersion))
			m.data, m.metas, m.times = append(m.data, e.Data), append(m.metas, e.Metadata), append(m.times, e.OccurredAt.UTC())
		}
	}
	if len(m.ids) == 0 {
		return nil, nil
	}
	return m, nil
}

func (m *manyAppend) args() []any {
	return []any{m.streamIDs, m.streamTypes, m.versions, m.ids, m.types, m.schemaVersions, m.data, m.metas, m.times,
		m.checkIDs, m.checkVersions}
}

// scan reads what appendManySQL returned.
func (m *manyAppend) scan(rows pgx.Rows) error {
	defer rows.Close()
	m.recorded = make([]Event, 0, len(m.ids))
	for rows.Next() {
		i := len(m.recorded)
		e := Event{StreamID: m.streamIDs[i], StreamType: m.streamTypes[i], ID: m.ids[i], Type: m.types[i],
			SchemaVersion: int(m.schemaVersions[i]), Data: m.data[i], Metadata: m.metas[i], OccurredAt: m.times[i]}
		var txid int64
		if err := rows.Scan(&e.Position.GlobalPosition, &txid, &e.Version, &e.RecordedAt); err != nil {
			return fmt.Errorf("append: %w", err)
		}
		e.Position.TransactionID, e.RecordedAt = uint64(txid), e.RecordedAt.UTC()
		m.recorded = append(m.recorded, e)
	}
	if err := rows.Err(); err != nil {
		return appendManyError(err)
	}
	return nil
}

// result is the recorded events, or, when nothing was recorded (the statement's check refused a
// stream), the *ConcurrencyError naming the stale stream.
func (m *manyAppend) result(ctx context.Context, q Querier) ([]Event, error) {
	if len(m.recorded) == 0 {
		return nil, staleStream(ctx, q, m.checkIDs, m.checkVersions)
	}
	return m.recorded, nil
}

// staleStream names the first stream that is not at its expected version.
func staleStream(ctx context.Context, q Querier, ids []uuid.UUID, expected []int64) error {
	for i, id := range ids {
		actual, err := StreamVersion(ctx, q, id)
		if err != nil {
			return fmt.Errorf("append to %s: read version after conflict: %w", id, err)
		}
		if actual != expected[i] {
			return &ConcurrencyError{StreamID: id, Expected: expected[i], Actual: actual}
		}
	}
	for i, id := range ids {
		var younger bool
		err := q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM events WHERE stream_id = $1 AND version = $2
			AND transaction_id > pg_current_xact_id())`, id, expected[i]).Scan(&younger)
		if err != nil {
			return fmt.Errorf("append to %s: read version after conflict: %w", id, err)
		}
		if younger {
			return &ConcurrencyError{StreamID: id, Expected: expected[i], Actual: -1}
		}
	}
	return fmt.Errorf("append: nothing appended, yet every stream is at its expected version")
}

// appendManyError is appendError for several streams: the stream that lost a race is read from
// the unique violation's detail, "Key (stream_id, version)=(<id>, <version>) already exists."
func appendManyError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "events_stream_version_key" {
		var stream Stream
		var version int64
		_, key, _ := strings.Cut(pgErr.Detail, ")=(")
		if id, v, ok := strings.Cut(key, ", "); ok {
			stream.ID, _ = uuid.Parse(id)
			fmt.Sscan(v, &version)
		}
		return appendError(stream, version-1, err)
	}
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "events_event_id_key" {
		return fmt.Errorf("append: %w", ErrDuplicateEvent)
	}
	// Not one stream's error (a lost connection, a trigger): naming a stream would mislead.
	return fmt.Errorf("append to several streams: %w", err)
}

// appendError turns driver errors into the store's named errors. (A deadlock or serialization
// failure is passed on as it is: Retryable tells callers to run the transaction again.)
func appendError(stream Stream, expected int64, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		switch pgErr.ConstraintName {
		case "events_stream_version_key":
			return &ConcurrencyError{StreamID: stream.ID, Expected: expected, Actual: -1}
		case "events_event_id_key":
			return fmt.Errorf("append to %s: %w", stream.ID, ErrDuplicateEvent)
		}
	}
	return fmt.Errorf("append to %s: %w", stream.ID, err)
}

// StreamVersion returns the version of a stream: the number of events in it (0 if none).
func StreamVersion(ctx context.Context, q Querier, streamID uuid.UUID) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1`, streamID).Scan(&v)
	return v, err
}
