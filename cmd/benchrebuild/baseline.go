package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/internal/backlog"
)

const bareName = "bare INSERT"

// bareTable has the events table's row shape and indexes and none of the event store's
// behaviour (no expected-version check, no transaction id, no triggers), as in eventstore's
// BenchmarkAppend and cmd/benchhttp.
const bareTable = `CREATE TABLE bench_bare_events (
	global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	stream_id uuid NOT NULL, stream_type text NOT NULL, version bigint NOT NULL,
	event_id uuid NOT NULL UNIQUE, type text NOT NULL, schema_version integer NOT NULL,
	data jsonb NOT NULL, metadata jsonb NOT NULL, occurred_at timestamptz NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (stream_id, version))`

// bareRow is a row of the baseline, from a batch of the same backlog the store holds.
type bareRow struct {
	stream     int // index of its stream in the sample, which gets a new id per INSERT
	streamType string
	version    int64
	typ        string
	schema     int
	data       json.RawMessage
	metadata   json.RawMessage
	occurredAt time.Time
}

// bareInsert writes o.events rows into a bare table, o.batch rows per multi-row INSERT, one
// statement after the other on one connection, and returns how long that took. The rows repeat
// one batch of the backlog (its event types and sizes), each INSERT with new stream and event
// ids. The table is dropped afterwards.
func bareInsert(ctx context.Context, db *pgxpool.Pool, o options) (time.Duration, error) {
	sample, streams, err := bareSample(o)
	if err != nil {
		return 0, err
	}
	if _, err := db.Exec(ctx, bareTable); err != nil {
		return 0, err
	}
	defer db.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS bench_bare_events`)
	conn, err := db.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()

	insert := func(n int) string {
		var sql strings.Builder
		sql.WriteString(`INSERT INTO bench_bare_events (stream_id, stream_type, version, event_id, type, schema_version,
			data, metadata, occurred_at) VALUES `)
		for i := range n {
			if i > 0 {
				sql.WriteString(", ")
			}
			p := 9 * i
			fmt.Fprintf(&sql, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)", p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8, p+9)
		}
		return sql.String()
	}
	full := insert(len(sample))
	ids := make([]uuid.UUID, streams)
	args := make([]any, 0, 9*len(sample))
	start := time.Now()
	for left := o.events; left > 0; left -= len(sample) {
		n := min(left, len(sample))
		sql := full
		if n < len(sample) {
			sql = insert(n)
		}
		for i := range ids {
			ids[i] = uuid.New()
		}
		args = args[:0]
		for _, r := range sample[:n] {
			args = append(args, ids[r.stream], r.streamType, r.version, uuid.Must(uuid.NewV7()), r.typ, r.schema,
				r.data, r.metadata, r.occurredAt)
		}
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// bareSample is one batch of the backlog as bare rows, and how many streams it spans.
func bareSample(o options) ([]bareRow, int, error) {
	appends, err := backlog.New(o.seed, time.Now().AddDate(-1, 0, 0)).Batch(o.batch)
	if err != nil {
		return nil, 0, err
	}
	var rows []bareRow
	for s, a := range appends {
		for i, e := range a.Events {
			meta, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, 0, err
			}
			rows = append(rows, bareRow{stream: s, streamType: a.Stream.Type, version: a.Expected + int64(i) + 1, typ: e.Type,
				schema: e.SchemaVersion, data: e.Data, metadata: meta, occurredAt: e.OccurredAt})
		}
	}
	return rows, len(appends), nil
}
