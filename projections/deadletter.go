package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/eventstore"
)

// DeadLetter is a row of projection_dead_letters: an entry a projector could not apply after
// MaxDeliveries deliveries, or an event a catch-up could not apply. The row is the record that
// the event is settled but missing from the read model: the partition's checkpoint may pass it
// only once the row is committed, so it lives in PostgreSQL, which keeps it when Redis does not.
type DeadLetter struct {
	ID         int64 // the row's id, which Redrive takes
	Group      string
	Partition  int
	EntryID    string    // id in the partition stream: the event's log position
	EventID    uuid.UUID // uuid.Nil when the entry was too broken to name it
	Type       string
	StreamID   uuid.UUID // uuid.Nil when unknown
	Version    int64     // 0 when unknown
	Error      string
	Deliveries int64
	FailedAt   time.Time
}

// entryDeadLetter describes a failing partition entry from what its envelope holds; fields that
// are missing or do not parse stay zero (a broken envelope is itself a reason to be here).
func entryDeadLetter(group string, p int, m redis.XMessage, cause error, deliveries int64, now time.Time) DeadLetter {
	get := func(k string) string { s, _ := m.Values[k].(string); return s }
	d := DeadLetter{Group: group, Partition: p, EntryID: m.ID, Type: get("type"), Error: errorText(cause),
		Deliveries: deliveries, FailedAt: now}
	d.EventID, d.StreamID = parseUUID(get("event_id")), parseUUID(get("stream_id"))
	if v, err := strconv.ParseInt(get("version"), 10, 64); err == nil {
		d.Version = v
	}
	return d
}

// eventDeadLetter describes a stored event a catch-up could not apply.
func eventDeadLetter(group string, p int, e eventstore.Event, cause error, attempts int, now time.Time) DeadLetter {
	return DeadLetter{Group: group, Partition: p, EntryID: EntryID(e.Position), EventID: e.ID, Type: e.Type,
		StreamID: e.StreamID, Version: e.Version, Error: errorText(cause), Deliveries: int64(attempts), FailedAt: now}
}

// parseUUID is uuid.Parse, but uuid.Nil for what does not parse (uuid.Parse may return a
// partly filled id with its error).
func parseUUID(s string) uuid.UUID {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil
	}
	return id
}

func errorText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// recordDeadLetter writes d (its ID is ignored). Dead-lettering the same entry of the same
// projector again, as a crash between this and the entry's acknowledgement leads to, updates the
// row with the new failure rather than adding another.
func recordDeadLetter(ctx context.Context, q eventstore.Querier, d DeadLetter) error {
	_, err := q.Exec(ctx, `INSERT INTO projection_dead_letters
		(projector, partition, entry_id, event_id, event_type, stream_id, version, error, deliveries, failed_at)
		VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7::bigint, 0), $8, $9, $10)
		ON CONFLICT (projector, entry_id) DO UPDATE SET error = excluded.error,
			deliveries = excluded.deliveries, failed_at = excluded.failed_at`,
		d.Group, d.Partition, storable(d.EntryID), nullUUID(d.EventID), storable(d.Type), nullUUID(d.StreamID),
		d.Version, storable(d.Error), d.Deliveries, d.FailedAt)
	if err != nil {
		return fmt.Errorf("record dead letter %s of %s: %w", d.EntryID, d.Group, err)
	}
	return nil
}

// storable makes s fit a text column: PostgreSQL refuses NUL bytes and invalid UTF-8, and what
// a broken entry (or a projector's error) carries may hold either. A row it refused would keep
// the entry pending, failing, forever.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func nullUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

const deadLetterColumns = `id, projector, partition, entry_id, event_id, event_type, stream_id, coalesce(version, 0),
	error, deliveries, failed_at`

func scanDeadLetter(row pgx.CollectableRow) (DeadLetter, error) {
	var d DeadLetter
	var eventID, streamID *uuid.UUID
	err := row.Scan(&d.ID, &d.Group, &d.Partition, &d.EntryID, &eventID, &d.Type, &streamID, &d.Version,
		&d.Error, &d.Deliveries, &d.FailedAt)
	if eventID != nil {
		d.EventID = *eventID
	}
	if streamID != nil {
		d.StreamID = *streamID
	}
	return d, err
}

// ListDeadLetters returns up to limit (all if limit <= 0) of a group's dead letters, oldest first.
func ListDeadLetters(ctx context.Context, q eventstore.Querier, group string, limit int) ([]DeadLetter, error) {
	var n any // LIMIT NULL is no limit
	if limit > 0 {
		n = limit
	}
	rows, err := q.Query(ctx, `SELECT `+deadLetterColumns+` FROM projection_dead_letters
		WHERE projector = $1 ORDER BY id LIMIT $2`, group, n)
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %s: %w", group, err)
	}
	dead, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %s: %w", group, err)
	}
	return dead, nil
}

// CountDeadLetters returns how many dead letters a group has.
func CountDeadLetters(ctx context.Context, q eventstore.Querier, group string) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM projection_dead_letters WHERE projector = $1`, group).Scan(&n); err != nil {
		return 0, fmt.Errorf("count dead letters of %s: %w", group, err)
	}
	return n, nil
}

// ErrNotDeadLettered is a RedriveResult's error for an id that is not one of the projector's
// dead letters.
var ErrNotDeadLettered = errors.New("no such dead letter")

// RedriveResult says what became of one dead letter.
type RedriveResult struct {
	DeadLetter
	Applied bool  // the event changed the read model (false with Err nil: it was already applied)
	Err     error // nil: applied or already applied, and its row deleted
}

// Redrive applies dead letters again (the given ids of p's dead letters, or all of them): each
// event is loaded from the event store by its id (else by its position, the entry id) and
// applied as Apply does, without moving any partition checkpoint. On success the row is deleted
// in the apply's transaction; on failure it stays, and its result carries the error. Rows are
// tried in id order (or the order given), and those refused as out of order are tried again
// after the others as long as that makes progress, so a stream's dead-lettered versions can be
// redriven together. The error is for failures to read the dead letters; per-row failures are
// in the results.
func Redrive(ctx context.Context, db *pgxpool.Pool, p Projector, ids ...int64) ([]RedriveResult, error) {
	results, err := redriveTargets(ctx, db, p.Name(), ids)
	if err != nil {
		return nil, err
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
				r.Applied, err = applyDeadLetter(ctx, db, p, e, r.ID)
			}
			if err != nil {
				r.Err = err
				if errors.Is(err, ErrOutOfOrder) {
					again = append(again, i)
				}
				continue
			}
			progress = true
		}
		if !progress {
			break
		}
		remaining = again
	}
	return results, nil
}

// redriveTargets reads the dead letters to redrive: all of the projector's, or those of ids (in
// that order; an id it does not have gets ErrNotDeadLettered).
func redriveTargets(ctx context.Context, db *pgxpool.Pool, projector string, ids []int64) ([]RedriveResult, error) {
	if len(ids) == 0 {
		dead, err := ListDeadLetters(ctx, db, projector, 0)
		if err != nil {
			return nil, err
		}
		results := make([]RedriveResult, len(dead))
		for i, d := range dead {
			results[i].DeadLetter = d
		}
		return results, nil
	}
	rows, err := db.Query(ctx, `SELECT `+deadLetterColumns+` FROM projection_dead_letters
		WHERE projector = $1 AND id = ANY($2)`, projector, ids)
	if err != nil {
		return nil, fmt.Errorf("read dead letters of %s: %w", projector, err)
	}
	dead, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("read dead letters of %s: %w", projector, err)
	}
	byID := make(map[int64]DeadLetter, len(dead))
	for _, d := range dead {
		byID[d.ID] = d
	}
	results := make([]RedriveResult, len(ids))
	for i, id := range ids {
		d, ok := byID[id]
		if !ok {
			results[i] = RedriveResult{DeadLetter: DeadLetter{ID: id, Group: projector}, Err: ErrNotDeadLettered}
			continue
		}
		results[i].DeadLetter = d
	}
	return results, nil
}

// applyDeadLetter is Apply without a checkpoint, deleting dead letter id in the same
// transaction: the row goes if and only if the event is applied (now or before).
func applyDeadLetter(ctx context.Context, db *pgxpool.Pool, p Projector, e eventstore.Event, id int64) (bool, error) {
	applied := false
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		if applied, err = ApplyTx(ctx, tx, p.Name(), p, e); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_dead_letters WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete dead letter %d: %w", id, err)
		}
		return nil
	})
	return applied, err
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
		return eventstore.Event{}, fmt.Errorf("dead letter %d names no event (no event_id, entry_id %q)", d.ID, d.EntryID)
	}
	events, err := eventstore.ReadAll(ctx, db, eventstore.Position{TransactionID: pos.TransactionID, GlobalPosition: pos.GlobalPosition - 1}, 1)
	if err != nil {
		return eventstore.Event{}, err
	}
	if len(events) == 0 || events[0].Position != pos {
		return eventstore.Event{}, fmt.Errorf("dead letter %d: no event at position %s in the event store", d.ID, d.EntryID)
	}
	return events[0], nil
}
