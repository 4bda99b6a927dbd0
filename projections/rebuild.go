package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/eventstore"
)

// Rebuildable is a projector whose read model Rebuild can recreate from the event store.
type Rebuildable interface {
	Projector
	// Tables lists the tables the projector writes, by their live names.
	Tables() []string
	// Into returns the same projector writing to other tables (live name → other name).
	Into(tables map[string]string) Projector
}

// batchApplier is implemented by projectors that apply many events in fewer round trips than one
// Apply each. The events are in version order per stream and each is applied exactly once.
type batchApplier interface {
	applyBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error
}

// RebuildProgressName is the progress name a rebuild records under until it is swapped in.
func RebuildProgressName(projector string) string { return projector + ":rebuild" }

// ErrRebuildRunning means another rebuild of the same projector holds its lock.
var ErrRebuildRunning = errors.New("a rebuild of this projector is already running")

// RebuildOptions tune Rebuild; the zero value is fine.
type RebuildOptions struct {
	// BatchSize is how many events the bulk pass reads and applies per transaction (default 1000).
	BatchSize int
	// Progress, if set, is called after each batch of the bulk pass.
	Progress func(RebuildProgress)
}

// RebuildProgress reports the bulk pass so far.
type RebuildProgress struct {
	Events   int64
	Position eventstore.Position
	Elapsed  time.Duration
}

// RebuildStats describes a finished rebuild.
type RebuildStats struct {
	Projector string
	Events    int64         // events read from the store, bulk pass and catch-up
	CaughtUp  int64         // of which applied in the swap transaction
	Streams   int           // distinct streams seen
	Duration  time.Duration // the whole rebuild
	Swap      time.Duration // how long the swap blocked the live projector
}

// EventsPerSecond is the rebuild's throughput over its whole duration.
func (s RebuildStats) EventsPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Events) / s.Duration.Seconds()
}

// Rebuild recreates p's read model from the event store and swaps it in, while the API keeps
// reading the live tables and the live projector keeps applying events to them:
//
//  1. Fresh tables <table>_next are created LIKE the live ones INCLUDING ALL (columns,
//     constraints, indexes), and progress under RebuildProgressName(p.Name()) is cleared.
//  2. Bulk pass: eventstore.ReadAll in batches of opts.BatchSize, each batch applied to the next
//     tables in one transaction with its progress, until a read comes back short (the store's
//     visibility horizon). Events that the global log order puts before their stream
//     predecessor (a transaction that took its id early but appended late) wait in memory for
//     it, so every stream is applied in version order.
//  3. Swap, in one transaction: LOCK TABLE projection_versions IN EXCLUSIVE MODE, which waits for
//     in-flight projector transactions and blocks new ones at their first statement (ApplyTx
//     starts by locking the stream's progress row); catch the next tables up to the current
//     horizon; rename each live table to <table>_old and <table>_next to <table>, drop the old
//     ones and give the indexes their live names back; delete the projector's progress and
//     rename the rebuild's to it. Blocked projector transactions then resume against the new
//     tables and the new progress.
//
// Why a table lock and not an advisory lock taken in Apply: ApplyTx locks the progress row
// before it calls Apply, so a projector transaction would hold a row lock the swap needs while
// waiting for an advisory lock the swap holds — a deadlock. The table lock is taken before any
// row lock by either side. It pauses every projector's progress writes (not the API, and not
// readers of projection_versions) for the swap only, which is short: the catch-up is whatever
// was appended during the last batch.
//
// A failed rebuild leaves the live read model untouched. Only one rebuild of a projector runs at
// a time (ErrRebuildRunning).
func Rebuild(ctx context.Context, db *pgxpool.Pool, p Projector, opts RebuildOptions) (RebuildStats, error) {
	rp, ok := p.(Rebuildable)
	if !ok {
		return RebuildStats{}, fmt.Errorf("projector %s cannot be rebuilt", p.Name())
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	start := time.Now()
	name, progressName := p.Name(), RebuildProgressName(p.Name())
	stats := RebuildStats{Projector: name}

	// A session advisory lock on a connection held for the whole rebuild: one rebuild at a time.
	conn, err := db.Acquire(ctx)
	if err != nil {
		return stats, err
	}
	lockKey := "projection rebuild:" + name
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, lockKey).Scan(&locked); err != nil || !locked {
		conn.Release()
		if err != nil {
			return stats, fmt.Errorf("rebuild %s: take the rebuild lock: %w", name, err)
		}
		return stats, fmt.Errorf("rebuild %s: %w", name, ErrRebuildRunning)
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		if _, err := conn.Exec(bg, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, lockKey); err != nil {
			conn.Conn().Close(bg) // closing drops the session lock; the pool discards a closed connection
		}
		conn.Release()
	}()

	live := rp.Tables()
	next := make(map[string]string, len(live))
	for _, t := range live {
		next[t] = t + "_next"
	}
	run := &rebuildRun{target: rp.Into(next), progressName: progressName,
		versions: map[uuid.UUID]int64{}, pending: map[uuid.UUID][]eventstore.Event{}}

	swapped := false
	defer func() {
		if !swapped { // leave nothing half-built behind
			cleanup := context.WithoutCancel(ctx)
			for _, t := range live {
				db.Exec(cleanup, `DROP TABLE IF EXISTS `+pgx.Identifier{next[t]}.Sanitize())
			}
			db.Exec(cleanup, `DELETE FROM projection_versions WHERE projector = $1`, progressName)
		}
	}()

	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for _, t := range live {
			l, n := pgx.Identifier{t}.Sanitize(), pgx.Identifier{next[t]}.Sanitize()
			if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+n); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE `+n+` (LIKE `+l+` INCLUDING ALL)`); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `DELETE FROM projection_versions WHERE projector = $1`, progressName)
		return err
	})
	if err != nil {
		return stats, fmt.Errorf("rebuild %s: create the new tables: %w", name, err)
	}

	// Bulk pass.
	for {
		events, err := eventstore.ReadAll(ctx, db, run.pos, opts.BatchSize)
		if err != nil {
			return stats, fmt.Errorf("rebuild %s: %w", name, err)
		}
		if len(events) == 0 {
			break
		}
		if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return run.apply(ctx, tx, events) }); err != nil {
			return stats, fmt.Errorf("rebuild %s: %w", name, err)
		}
		stats.Events += int64(len(events))
		if opts.Progress != nil {
			opts.Progress(RebuildProgress{Events: stats.Events, Position: run.pos, Elapsed: time.Since(start)})
		}
		if len(events) < opts.BatchSize {
			break
		}
	}

	// Swap.
	swapStart := time.Now()
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE projection_versions IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("block the live projector: %w", err)
		}
		for {
			events, err := eventstore.ReadAll(ctx, tx, run.pos, opts.BatchSize)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				break
			}
			if err := run.apply(ctx, tx, events); err != nil {
				return err
			}
			stats.CaughtUp += int64(len(events))
		}
		if n := run.waiting(); n > 0 {
			return fmt.Errorf("%d events never met their stream predecessor in the log", n)
		}
		for _, t := range live {
			if err := swapTable(ctx, tx, t, next[t]); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_versions WHERE projector = $1`, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projection_versions SET projector = $1 WHERE projector = $2`, name, progressName)
		return err
	})
	if err != nil {
		return stats, fmt.Errorf("rebuild %s: swap: %w", name, err)
	}
	swapped = true
	stats.Events += stats.CaughtUp
	stats.Streams = len(run.versions)
	stats.Swap = time.Since(swapStart)
	stats.Duration = time.Since(start)
	return stats, nil
}

// swapTable replaces table live by next, inside the swap transaction.
func swapTable(ctx context.Context, tx pgx.Tx, live, next string) error {
	l, n, o := pgx.Identifier{live}.Sanitize(), pgx.Identifier{next}.Sanitize(), pgx.Identifier{live + "_old"}.Sanitize()
	if _, err := tx.Exec(ctx, `ALTER TABLE `+l+` RENAME TO `+o); err != nil {
		return fmt.Errorf("rename %s: %w", live, err)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE `+n+` RENAME TO `+l); err != nil {
		return fmt.Errorf("rename %s: %w", next, err)
	}
	if _, err := tx.Exec(ctx, `DROP TABLE `+o); err != nil {
		return fmt.Errorf("drop the old %s: %w", live, err)
	}
	// LIKE named the copies' indexes after the next table (<next>_<columns>_idx, <next>_pkey);
	// now that the old indexes are gone, their names are free again.
	rows, err := tx.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1`, live)
	if err != nil {
		return err
	}
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, idx := range indexes {
		rest, ok := strings.CutPrefix(idx, next+"_")
		if !ok {
			continue
		}
		if _, err := tx.Exec(ctx, `ALTER INDEX `+pgx.Identifier{idx}.Sanitize()+` RENAME TO `+pgx.Identifier{live + "_" + rest}.Sanitize()); err != nil {
			return fmt.Errorf("rename index %s: %w", idx, err)
		}
	}
	return nil
}

// rebuildRun is the state of one rebuild between batches.
type rebuildRun struct {
	target       Projector
	progressName string
	pos          eventstore.Position              // the last event read
	versions     map[uuid.UUID]int64              // stream → version applied to the new tables
	pending      map[uuid.UUID][]eventstore.Event // events read before their stream predecessor
}

// apply applies a batch read from the log, in stream version order, and records progress.
func (r *rebuildRun) apply(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	ready := r.order(readBy(r.target, events))
	if ba, ok := r.target.(batchApplier); ok {
		if err := ba.applyBatch(ctx, tx, ready); err != nil {
			return err
		}
	} else {
		for _, e := range ready {
			if err := r.target.Apply(ctx, tx, e); err != nil {
				return fmt.Errorf("apply %s (%s v%d): %w", e.ID, e.Type, e.Version, err)
			}
		}
	}
	if len(ready) > 0 {
		if err := recordProgress(ctx, tx, r.progressName, ready, r.versions); err != nil {
			return err
		}
	}
	r.pos = events[len(events)-1].Position
	return nil
}

// order returns the events that can be applied now, each stream's in version order, including
// earlier events that were waiting for one of these; the rest wait in r.pending.
func (r *rebuildRun) order(events []eventstore.Event) []eventstore.Event {
	ready := make([]eventstore.Event, 0, len(events))
	for _, e := range events {
		id := e.StreamID
		if e.Version <= r.versions[id] {
			continue // the log holds each event once; nothing to do
		}
		if e.Version > r.versions[id]+1 {
			r.pending[id] = append(r.pending[id], e)
			continue
		}
		ready = append(ready, e)
		r.versions[id] = e.Version
		for waiting := r.pending[id]; len(waiting) > 0; {
			i := indexOfVersion(waiting, r.versions[id]+1)
			if i < 0 {
				break
			}
			ready = append(ready, waiting[i])
			r.versions[id]++
			waiting = append(waiting[:i], waiting[i+1:]...)
			r.pending[id] = waiting
		}
		if len(r.pending[id]) == 0 {
			delete(r.pending, id)
		}
	}
	return ready
}

func indexOfVersion(events []eventstore.Event, version int64) int {
	for i, e := range events {
		if e.Version == version {
			return i
		}
	}
	return -1
}

// waiting counts events still waiting for their predecessor.
func (r *rebuildRun) waiting() int {
	n := 0
	for _, w := range r.pending {
		n += len(w)
	}
	return n
}
