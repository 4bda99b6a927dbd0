package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
)

// SubscriptionStateSchemaVersion is the version of the shape of domain.Subscription as stored in
// a snapshot (the STATE, not the events: event schema versions are separate). A snapshot whose
// state_schema_version differs is ignored and the state is rebuilt from the events.
//
// BUMP IT WHENEVER domain.Subscription (or a type it contains: PlanTerms, ScheduledChange, ...)
// CHANGES SHAPE, or whenever Evolve changes what state a history folds to (a snapshot caches the
// result of the old Evolve). TestSubscriptionStateShape fails when the shape changes, as a
// reminder; update its expected fingerprint together with this constant.
const SubscriptionStateSchemaVersion = 2

// DefaultSnapshotEvery is the snapshot frequency commands use unless configured otherwise.
// Loading costs about as much per event folded after the snapshot as a short history costs in
// all (BenchmarkLoadSubscription), so a snapshot every 10 events keeps any load within 2× of a
// 10-event one; at 100 it is about 8×. The price is one small upsert every 10 events.
const DefaultSnapshotEvery = 10

// SnapshotLoad says how LoadSubscriptionWithSnapshot got its state.
type SnapshotLoad struct {
	// SnapshotVersion is the version of the snapshot the state started from; 0 if none was used.
	SnapshotVersion int64
	// EventsFolded is the number of events read and folded after the snapshot (or from the start).
	EventsFolded int
	// Ignored, if not nil, says why a stored snapshot was not used. It is not a failure: the state
	// was rebuilt from the events and is correct; callers log it.
	Ignored error
}

// ShouldSnapshot says whether a command that appended appended events to a state loaded as l
// should save a snapshot, with a snapshot wanted every `every` events (0 or less: never). It asks
// for one as soon as the next load would fold `every` events or more, so a stream whose snapshot
// was deleted, or ignored as outdated, gets a new one on its next command.
func (l SnapshotLoad) ShouldSnapshot(every int, appended int) bool {
	return every > 0 && appended > 0 && int64(l.EventsFolded)+int64(appended) >= int64(every)
}

// ErrSnapshotIgnored matches every SnapshotLoad.Ignored error.
var ErrSnapshotIgnored = errors.New("snapshot ignored")

type ignoredSnapshotError struct {
	streamID uuid.UUID
	version  int64
	reason   string
}

func (e *ignoredSnapshotError) Error() string {
	return fmt.Sprintf("snapshot of %s at version %d ignored: %s", e.streamID, e.version, e.reason)
}

func (e *ignoredSnapshotError) Is(target error) bool { return target == ErrSnapshotIgnored }

// loadSnapshotSQL reads a stream's snapshot and whether the event it claims to end at is stored.
const loadSnapshotSQL = `
SELECT s.version, s.state_schema_version, s.state, e.event_id IS NOT NULL
FROM snapshots s
LEFT JOIN events e ON e.stream_id = s.stream_id AND e.version = s.version AND e.event_id = s.last_event_id
WHERE s.stream_id = $1`

// LoadSubscriptionWithSnapshot rebuilds a subscription's current state from its latest usable
// snapshot and the events after it. It always returns the same state as LoadSubscription with
// zero options (a property test checks it): snapshots are only a cache. A snapshot with another
// state schema version, that does not decode strictly, or whose last event is not in the store,
// is ignored (reported in SnapshotLoad.Ignored) and the state is folded from the first event.
func LoadSubscriptionWithSnapshot(ctx context.Context, q Querier, id uuid.UUID) (domain.Subscription, SnapshotLoad, error) {
	var load SnapshotLoad
	var start domain.Subscription

	var (
		version       int64
		schemaVersion int
		state         []byte
		eventMatches  bool
	)
	err := q.QueryRow(ctx, loadSnapshotSQL, id).Scan(&version, &schemaVersion, &state, &eventMatches)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return domain.Subscription{}, SnapshotLoad{}, fmt.Errorf("load snapshot of %s: %w", id, err)
	default:
		if s, reason := decodeSnapshot(version, schemaVersion, state, eventMatches); reason != "" {
			load.Ignored = &ignoredSnapshotError{streamID: id, version: version, reason: reason}
		} else {
			start, load.SnapshotVersion = s, version
		}
	}

	events, err := Load(ctx, q, id, LoadOptions{AfterVersion: load.SnapshotVersion})
	if err != nil {
		return domain.Subscription{}, SnapshotLoad{}, err
	}
	s := start
	for _, e := range events {
		de, err := DecodeEvent(e)
		if err != nil {
			return domain.Subscription{}, SnapshotLoad{}, err
		}
		s = domain.Evolve(s, de)
	}
	load.EventsFolded = len(events)
	return s, load, nil
}

// LoadSubscriptions is LoadSubscriptionWithSnapshot for several subscriptions (each named once
// or more) in two queries, their snapshots and then the events after them, whatever their
// number. A subscription without events is the zero Subscription; a snapshot that cannot be
// used is passed over silently, as LoadSubscriptionWithSnapshot would (its caller logs it).
func LoadSubscriptions(ctx context.Context, q Querier, ids []uuid.UUID) (map[uuid.UUID]domain.Subscription, error) {
	out := make(map[uuid.UUID]domain.Subscription, len(ids))
	streams := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		if _, dup := out[id]; !dup {
			out[id] = domain.Subscription{}
			streams = append(streams, id)
		}
	}
	if len(streams) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT s.stream_id, s.version, s.state_schema_version, s.state,
		    EXISTS (SELECT FROM events e WHERE e.stream_id = s.stream_id AND e.version = s.version AND e.event_id = s.last_event_id)
		FROM unnest($1::uuid[]) AS k(id),
		LATERAL (SELECT stream_id, version, state_schema_version, state, last_event_id FROM snapshots
		         WHERE stream_id = k.id LIMIT 1) s`, streams)
	if err != nil {
		return nil, fmt.Errorf("load snapshots: %w", err)
	}
	var (
		id            uuid.UUID
		version       int64
		schemaVersion int
		state         []byte
		eventMatches  bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &version, &schemaVersion, &state, &eventMatches}, func() error {
		if s, reason := decodeSnapshot(version, schemaVersion, state, eventMatches); reason == "" {
			out[id] = s
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load snapshots: %w", err)
	}
	after := make([]int64, len(streams))
	for i, id := range streams {
		after[i] = out[id].Version
	}
	events, err := loadAfter(ctx, q, streams, after)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	if err := foldInto(out, events, domain.Evolve); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeSnapshot returns the snapshot's state, or why it cannot be used.
func decodeSnapshot(version int64, schemaVersion int, state []byte, eventMatches bool) (domain.Subscription, string) {
	if schemaVersion != SubscriptionStateSchemaVersion {
		return domain.Subscription{}, fmt.Sprintf("state schema version %d, this build reads %d", schemaVersion, SubscriptionStateSchemaVersion)
	}
	if !eventMatches {
		return domain.Subscription{}, "its last event is not in the store"
	}
	var s domain.Subscription
	dec := json.NewDecoder(bytes.NewReader(state))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return domain.Subscription{}, "decode state: " + err.Error()
	}
	if _, err := dec.Token(); err != io.EOF {
		return domain.Subscription{}, "decode state: trailing data"
	}
	if s.Version != version {
		return domain.Subscription{}, fmt.Sprintf("state has version %d", s.Version)
	}
	return s, ""
}

// saveSnapshotSQL upserts the latest snapshot of a stream. It writes only if the event at the
// state's version is visible to the writer (so a snapshot never describes events that are not
// stored, in the writer's transaction at least, and it commits or rolls back with them), and
// never replaces a snapshot of a newer state shape, nor one of the same shape at a later version.
const saveSnapshotSQL = `
INSERT INTO snapshots (stream_id, stream_type, version, last_event_id, state_schema_version, state)
SELECT e.stream_id, e.stream_type, e.version, e.event_id, $3, $4
FROM events e WHERE e.stream_id = $1 AND e.version = $2
ON CONFLICT (stream_id) DO UPDATE
SET stream_type = EXCLUDED.stream_type, version = EXCLUDED.version, last_event_id = EXCLUDED.last_event_id,
    state_schema_version = EXCLUDED.state_schema_version, state = EXCLUDED.state, taken_at = now()
WHERE snapshots.state_schema_version < EXCLUDED.state_schema_version
   OR (snapshots.state_schema_version = EXCLUDED.state_schema_version AND snapshots.version < EXCLUDED.version)`

// SaveSubscriptionSnapshot stores s as the snapshot of its stream, the subscription with ID id.
// Pass the transaction that appended s's last event (or any connection after it committed): the
// snapshot is written only if the event at s.Version is visible to q, so a rolled-back append
// leaves no snapshot. It returns whether the snapshot was written (false when a newer one is
// already stored or the event is not visible).
func SaveSubscriptionSnapshot(ctx context.Context, q Querier, id uuid.UUID, s domain.Subscription) (bool, error) {
	if !s.Exists() {
		return false, nil
	}
	state, err := json.Marshal(s)
	if err != nil {
		return false, fmt.Errorf("save snapshot of %s: %w", id, err)
	}
	tag, err := q.Exec(ctx, saveSnapshotSQL, id, s.Version, SubscriptionStateSchemaVersion, state)
	if err != nil {
		return false, fmt.Errorf("save snapshot of %s: %w", id, err)
	}
	return tag.RowsAffected() > 0, nil
}

// DeleteSnapshots deletes the snapshots of the given streams, or all snapshots when none are
// given, and returns how many it deleted. It never changes what a load returns, only its cost.
func DeleteSnapshots(ctx context.Context, q Querier, streamIDs ...uuid.UUID) (int64, error) {
	tag, err := q.Exec(ctx, `DELETE FROM snapshots WHERE cardinality($1::uuid[]) = 0 OR stream_id = ANY($1)`, streamIDs)
	if err != nil {
		return 0, fmt.Errorf("delete snapshots: %w", err)
	}
	return tag.RowsAffected(), nil
}

// SubscriptionStateShape describes the shape of domain.Subscription as a snapshot stores it:
// every field's name, JSON name and type, recursively. TestSubscriptionStateShape pins it, so a
// change to the state type fails a test until SubscriptionStateSchemaVersion is reconsidered.
func SubscriptionStateShape() string {
	var b strings.Builder
	describeType(&b, reflect.TypeFor[domain.Subscription](), map[reflect.Type]bool{})
	return b.String()
}

func describeType(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	switch {
	case t.PkgPath() == "time" && t.Name() == "Time":
		b.WriteString("time.Time")
		return
	case t.Kind() == reflect.Pointer:
		b.WriteString("*")
		describeType(b, t.Elem(), seen)
		return
	case t.Kind() == reflect.Slice:
		b.WriteString("[]")
		describeType(b, t.Elem(), seen)
		return
	case t.Kind() == reflect.Map:
		b.WriteString("map[")
		describeType(b, t.Key(), seen)
		b.WriteString("]")
		describeType(b, t.Elem(), seen)
		return
	case t.Kind() != reflect.Struct:
		fmt.Fprintf(b, "%s(%s)", t.Name(), t.Kind())
		return
	}
	if seen[t] {
		b.WriteString(t.Name())
		return
	}
	seen[t] = true
	b.WriteString(t.Name() + "{")
	for i := range t.NumField() {
		f := t.Field(i)
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(b, "%s `%s` ", f.Name, f.Tag.Get("json"))
		describeType(b, f.Type, seen)
	}
	b.WriteString("}")
}
