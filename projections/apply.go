package projections

import (
	"context"
	"errors"
	"fmt"

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
		ON CONFLICT (projector, stream_id) DO UPDATE SET version = excluded.version`, progressName, e.StreamID, e.Version)
	if err != nil {
		return false, fmt.Errorf("%s: record progress of %s: %w", progressName, e.StreamID, err)
	}
	return true, nil
}

func saveCheckpoint(ctx context.Context, tx pgx.Tx, projector string, partition int, pos eventstore.Position) error {
	_, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (projector, partition, transaction_id, global_position)
		VALUES ($1, $2, $3::bigint::text::xid8, $4)
		ON CONFLICT (projector, partition) DO UPDATE SET transaction_id = excluded.transaction_id,
			global_position = excluded.global_position
		WHERE (projection_checkpoints.transaction_id, projection_checkpoints.global_position)
		    < (excluded.transaction_id, excluded.global_position)`,
		projector, partition, int64(pos.TransactionID), pos.GlobalPosition)
	if err != nil {
		return fmt.Errorf("%s: save checkpoint of partition %d: %w", projector, partition, err)
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
// one per event. If any event fails, nothing is applied and the error is returned; the caller
// then goes one event at a time to isolate the culprit and retry it alone.
// It returns how many events changed the read model (the rest were duplicates).
func ApplyBatch(ctx context.Context, db *pgxpool.Pool, p Projector, events []eventstore.Event, checkpoints []partitionPosition) (int, error) {
	applied := 0
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for _, e := range events {
			ok, err := ApplyTx(ctx, tx, p.Name(), p, e)
			if err != nil {
				return err
			}
			if ok {
				applied++
			}
		}
		for _, c := range checkpoints {
			if err := saveCheckpoint(ctx, tx, p.Name(), c.partition, c.position); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return applied, nil
}
