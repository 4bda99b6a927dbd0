package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/eventstore"
)

// Apply gives e to p exactly once, in its stream's version order: in one transaction it locks
// the stream's progress row, skips e if it is already applied, refuses it with ErrOutOfOrder if
// its predecessor is missing, and otherwise applies it and records the new version. When
// partition >= 0 the partition's checkpoint moves to e's position in the same transaction.
// It reports whether e changed the read model.
func Apply(ctx context.Context, db *pgxpool.Pool, p Projector, e eventstore.Event, partition int) (bool, error) {
	applied := false
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		applied, err = ApplyTx(ctx, tx, p.Name(), p, e)
		if err != nil || partition < 0 {
			return err
		}
		return saveCheckpoint(ctx, tx, p.Name(), partition, e.Position)
	})
	return applied, err
}

// ApplyTx is Apply inside the caller's transaction, recording progress under progressName (a
// rebuild records under its own name until it is swapped in).
func ApplyTx(ctx context.Context, tx pgx.Tx, progressName string, p Projector, e eventstore.Event) (bool, error) {
	if !reads(p, e.StreamType) {
		return false, nil
	}
	var current int64
	err := tx.QueryRow(ctx, `SELECT version FROM projection_versions WHERE projector = $1 AND stream_id = $2 FOR UPDATE`,
		progressName, e.StreamID).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("%s: read progress of %s: %w", progressName, e.StreamID, err)
	}
	switch {
	case e.Version <= current:
		return false, nil
	case e.Version > current+1:
		return false, fmt.Errorf("%s: %s version %d, applied up to %d: %w", progressName, e.StreamID, e.Version, current, ErrOutOfOrder)
	}
	if err := p.Apply(ctx, tx, e); err != nil {
		return false, fmt.Errorf("%s: apply %s (%s v%d): %w", progressName, e.ID, e.Type, e.Version, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO projection_versions (projector, stream_id, version) VALUES ($1, $2, $3)
		ON CONFLICT (projector, stream_id) DO UPDATE SET version = excluded.version`+newerOnly("projection_versions"),
		progressName, e.StreamID, e.Version)
	if err != nil {
		return false, fmt.Errorf("%s: record progress of %s: %w", progressName, e.StreamID, err)
	}
	return true, nil
}

func saveCheckpoint(ctx context.Context, tx pgx.Tx, projector string, partition int, pos eventstore.Position) error {
	return saveCheckpoints(ctx, tx, projector, []partitionPosition{{partition, pos}})
}

// saveCheckpoints moves the partitions' checkpoints forward (never back), in one statement.
func saveCheckpoints(ctx context.Context, tx pgx.Tx, projector string, checkpoints []partitionPosition) error {
	if len(checkpoints) == 0 {
		return nil
	}
	partitions, txs, positions := make([]int32, len(checkpoints)), make([]int64, len(checkpoints)), make([]int64, len(checkpoints))
	for i, c := range checkpoints {
		partitions[i], txs[i], positions[i] = int32(c.partition), int64(c.position.TransactionID), c.position.GlobalPosition
	}
	_, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (projector, partition, transaction_id, global_position)
		SELECT $1, p, t::text::xid8, g FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS c(p, t, g)
		ON CONFLICT (projector, partition) DO UPDATE SET transaction_id = excluded.transaction_id,
			global_position = excluded.global_position
		WHERE (projection_checkpoints.transaction_id, projection_checkpoints.global_position)
		    < (excluded.transaction_id, excluded.global_position)`,
		projector, partitions, txs, positions)
	if err != nil {
		return fmt.Errorf("%s: save checkpoints of partitions %v: %w", projector, partitions, err)
	}
	return nil
}

// Checkpoint returns how far a projector has applied a partition (the zero Position if never).
func Checkpoint(ctx context.Context, q eventstore.Querier, projector string, partition int) (eventstore.Position, error) {
	var pos eventstore.Position
	var tx int64
	err := q.QueryRow(ctx, `SELECT transaction_id::text::bigint, global_position FROM projection_checkpoints
		WHERE projector = $1 AND partition = $2`, projector, partition).Scan(&tx, &pos.GlobalPosition)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Position{}, nil
	}
	pos.TransactionID = uint64(tx)
	return pos, err
}

// partitionPosition is where a partition's checkpoint moves to.
type partitionPosition struct {
	partition int
	position  eventstore.Position
}

// ApplyBatch applies events (in order) in one transaction, as Apply does one by one, and moves
// the given partitions' checkpoints in the same transaction: one commit for the batch instead of
// one per event. A projector with a batch apply (every one in Registry) gets the whole batch at
// once, so the batch costs a few statements rather than a few per event: the progress rows of
// all its streams are locked and read in one query, duplicates dropped, and the new versions
// written in one statement. If any event fails or is out of order, nothing is applied and the
// error is returned; the caller then goes one event at a time to isolate the culprit and retry
// it alone. It returns how many events changed the read model (the rest were duplicates).
func ApplyBatch(ctx context.Context, db *pgxpool.Pool, p Projector, events []eventstore.Event, checkpoints []partitionPosition) (int, error) {
	applied := 0
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		if applied, err = applyBatchTx(ctx, tx, p, events); err != nil {
			return err
		}
		return saveCheckpoints(ctx, tx, p.Name(), checkpoints)
	})
	if err != nil {
		return 0, err
	}
	return applied, nil
}

// applyBatchTx is ApplyBatch's work inside tx.
func applyBatchTx(ctx context.Context, tx pgx.Tx, p Projector, events []eventstore.Event) (int, error) {
	if events = readBy(p, events); len(events) == 0 {
		return 0, nil
	}
	ba, ok := p.(batchApplier)
	if !ok {
		applied := 0
		for _, e := range events {
			ok, err := ApplyTx(ctx, tx, p.Name(), p, e)
			if err != nil {
				return 0, err
			}
			if ok {
				applied++
			}
		}
		return applied, nil
	}
	versions, err := streamVersions(ctx, tx, p.Name(), events, true)
	if err != nil {
		return 0, err
	}
	ready := make([]eventstore.Event, 0, len(events))
	for _, e := range events {
		switch current := versions[e.StreamID]; {
		case e.Version <= current:
			continue // a duplicate delivery
		case e.Version > current+1:
			return 0, fmt.Errorf("%s: %s version %d, applied up to %d: %w", p.Name(), e.StreamID, e.Version, current, ErrOutOfOrder)
		}
		ready = append(ready, e)
		versions[e.StreamID] = e.Version
	}
	if len(ready) == 0 {
		return 0, nil
	}
	if err := ba.applyBatch(ctx, tx, ready); err != nil {
		return 0, fmt.Errorf("%s: apply %d events: %w", p.Name(), len(ready), err)
	}
	return len(ready), recordProgress(ctx, tx, p.Name(), ready, versions)
}

// streamVersions reads the versions the projector has applied of the streams of events (a
// stream it never saw is absent), locking their rows when lock is set.
//
// Each stream is looked up by the whole primary key in a LATERAL subquery (its LIMIT keeps the
// planner from flattening it into a join), so the plan is one index probe per stream whatever
// the statistics say. The plain `stream_id = ANY($2)` form
// let the planner, misled by the statistics of a young table, scan the projector's whole
// range of the index per batch: a cost growing with the table, which made saturated creates
// spend most of PostgreSQL's time here. The ids are sorted so that two consumers with
// overlapping batches (after a claim or a catch-up) lock in one order and wait for each other
// instead of deadlocking.
func streamVersions(ctx context.Context, q eventstore.Querier, progressName string, events []eventstore.Event, lock bool) (map[uuid.UUID]int64, error) {
	seen := make(map[uuid.UUID]bool, len(events))
	ids := make([]uuid.UUID, 0, len(events))
	for _, e := range events {
		if !seen[e.StreamID] {
			seen[e.StreamID] = true
			ids = append(ids, e.StreamID)
		}
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	forUpdate := ""
	if lock {
		forUpdate = " FOR UPDATE"
	}
	rows, err := q.Query(ctx, `SELECT pv.stream_id, pv.version FROM unnest($2::uuid[]) AS s(id),
		LATERAL (SELECT stream_id, version FROM projection_versions
		         WHERE projector = $1 AND stream_id = s.id LIMIT 1`+forUpdate+`) pv`, progressName, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: read progress: %w", progressName, err)
	}
	versions := make(map[uuid.UUID]int64, len(ids))
	var id uuid.UUID
	var v int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &v}, func() error {
		versions[id] = v
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s: read progress: %w", progressName, err)
	}
	return versions, nil
}

// recordProgress writes the versions reached by the streams of events, in one statement.
func recordProgress(ctx context.Context, tx pgx.Tx, progressName string, events []eventstore.Event, versions map[uuid.UUID]int64) error {
	ids := make([]uuid.UUID, 0, len(events))
	reached := make([]int64, 0, len(events))
	seen := map[uuid.UUID]bool{}
	for _, e := range events {
		if !seen[e.StreamID] {
			seen[e.StreamID] = true
			ids = append(ids, e.StreamID)
			reached = append(reached, versions[e.StreamID])
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO projection_versions (projector, stream_id, version)
		SELECT $1, s, v FROM unnest($2::uuid[], $3::bigint[]) AS t(s, v)
		ON CONFLICT (projector, stream_id) DO UPDATE SET version = excluded.version`+newerOnly("projection_versions"),
		progressName, ids, reached)
	if err != nil {
		return fmt.Errorf("%s: record progress: %w", progressName, err)
	}
	return nil
}
