package projections

import (
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// foldBatch is the part every one-row-per-aggregate projector shares (Subscriptions keeps its
// own copy, which predates it): it folds the events of one stream type onto per-stream states
// with the aggregate's own evolve function, so a row is exactly what loading the aggregate
// gives for the same events.
//
// Idempotency does not depend on the progress table: an event at or below its state's version
// was folded already and is skipped, and one beyond the next version is refused with
// ErrOutOfOrder. An event that does not fold to its own stream version means the store and
// the evolve function disagree about the history, which no retry fixes: it is an error.
//
// load returns the stored states of the given streams (a stream without a row is absent).
// each, if set, is called for every event folded with the state before and after it. foldBatch
// returns the streams whose state changed, in the order they first changed, and their states.
func foldBatch[S any](events []eventstore.Event, streamType, table string,
	load func(ids []uuid.UUID) (map[uuid.UUID]S, error),
	evolve func(S, domain.Event) S, version func(S) int64,
	each func(e eventstore.Event, before, after S) error,
) ([]uuid.UUID, map[uuid.UUID]S, error) {
	var ids []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, e := range events {
		if e.StreamType == streamType && !seen[e.StreamID] {
			seen[e.StreamID] = true
			ids = append(ids, e.StreamID)
		}
	}
	if len(ids) == 0 {
		return nil, nil, nil
	}
	states, err := load(ids)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: load: %w", table, err)
	}
	var changed []uuid.UUID
	dirty := map[uuid.UUID]bool{}
	for _, e := range events {
		if e.StreamType != streamType {
			continue
		}
		before := states[e.StreamID]
		switch v := version(before); {
		case e.Version <= v:
			continue // already folded
		case e.Version > v+1:
			return nil, nil, fmt.Errorf("%s: %s version %d, row at version %d: %w", table, e.StreamID, e.Version, v, ErrOutOfOrder)
		}
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			return nil, nil, err
		}
		after := evolve(before, de)
		if version(after) != e.Version {
			return nil, nil, fmt.Errorf("%s: event %s (%s, stream %s version %d) folds to version %d",
				table, e.ID, e.Type, e.StreamID, e.Version, version(after))
		}
		if each != nil {
			if err := each(e, before, after); err != nil {
				return nil, nil, err
			}
		}
		states[e.StreamID] = after
		if !dirty[e.StreamID] {
			dirty[e.StreamID] = true
			changed = append(changed, e.StreamID)
		}
	}
	return changed, states, nil
}

// byKeySQL selects columns (comma separated, unqualified) of table's rows whose key is in $1, a
// uuid array: one index probe per key, in a LATERAL kept from being flattened into a join by its
// LIMIT. Written as `key = ANY($1)` it was planned as a scan of the whole table whenever the
// table's statistics were stale (a young table, or autovacuum off): a read model's every batch
// then cost a pass over the read model.
func byKeySQL(table, key, columns string) string {
	return `SELECT r.* FROM unnest($1::uuid[]) AS k(key), LATERAL (SELECT ` + columns + ` FROM ` + table +
		` WHERE ` + key + ` = k.key LIMIT 1) r`
}

// upsertSQL is an INSERT of columns (the key first) that updates every other column on a
// conflict over the key, unless the row already holds a later version (see newerOnly).
func upsertSQL(table string, columns []string) string {
	updates := make([]string, 0, len(columns)-1)
	for _, c := range columns[1:] {
		updates = append(updates, c+" = excluded."+c)
	}
	return `INSERT INTO ` + table + ` (` + strings.Join(columns, ", ") + `) VALUES (` + placeholders(len(columns)) + `)
		ON CONFLICT (` + columns[0] + `) DO UPDATE SET ` + strings.Join(updates, ", ") + newerOnly(table)
}

// newerOnly is the condition of an upsert into a read model's table (or projection_versions)
// that never takes a row back to an earlier version. Two consumers can fold the same stream at
// once when neither sees a row yet (a redelivery racing the first delivery, after Redis lost
// data): nothing is locked then, and the one that folded fewer events, waiting on the other's
// insert, would otherwise overwrite the row, and the stream's progress, with the older state.
func newerOnly(table string) string {
	return ` WHERE ` + table + `.version < excluded.version`
}

// renamed returns the table's name in tables (live name → other name), or table itself.
func renamed(tables map[string]string, table string) string {
	if to, ok := tables[table]; ok {
		return to
	}
	return table
}
