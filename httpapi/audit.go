package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// The audit trail, read straight from the event store (never from the read models):
//
//	GET /v1/subscriptions/{id}/events   one subscription's history, in version order
//	GET /v1/subscriptions/{id}/replay   its state as of a time or a version, folded from the events
//	GET /v1/subscriptions/{id}/diff     what changed between two points of its history
//	GET /v1/events                      the global log, in the gap-free order of eventstore.ReadAll

const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
	// maxGlobalScan bounds how many events one GET /v1/events reads while looking for events of
	// the asked type; the page then ends early and next_after_position continues the scan.
	maxGlobalScan = 10000
	// globalScanBatch is how many events each read of a filtered scan asks for.
	globalScanBatch = 500
)

// eventJSON is one recorded event as the audit routes show it. Data is the event decoded
// through eventstore.DecodeEvent and encoded again: the current shape of the event,
// whatever schema version it was stored with.
type eventJSON struct {
	Version       int64           `json:"version"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	OccurredAt    time.Time       `json:"occurred_at"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Data          json.RawMessage `json:"data"`
	Metadata      metadataJSON    `json:"metadata"`
}

// metadataJSON is an event's metadata; a part the event does not record is null.
type metadataJSON struct {
	CorrelationID  *string `json:"correlation_id"`
	CausationID    *string `json:"causation_id"`
	Actor          *string `json:"actor"`
	Source         *string `json:"source"`
	IdempotencyKey *string `json:"idempotency_key"`
}

// globalEventJSON is an event of the global log: an eventJSON with its stream and position.
type globalEventJSON struct {
	StreamID       string `json:"stream_id"`
	StreamType     string `json:"stream_type"`
	GlobalPosition int64  `json:"global_position"`
	eventJSON
}

func optionalString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toEventJSON(e eventstore.Event) (eventJSON, error) {
	data := e.Data
	if e.StreamType == eventstore.SubscriptionStream {
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			return eventJSON{}, err
		}
		if data, err = json.Marshal(de); err != nil {
			return eventJSON{}, fmt.Errorf("encode event %s: %w", e.ID, err)
		}
	}
	m := e.Metadata
	return eventJSON{
		Version: e.Version, EventID: e.ID.String(), Type: e.Type, SchemaVersion: e.SchemaVersion,
		OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt, Data: data,
		Metadata: metadataJSON{
			CorrelationID: optionalString(m.CorrelationID), CausationID: optionalString(m.CausationID),
			Actor: optionalString(m.Actor), Source: optionalString(m.Source),
			IdempotencyKey: optionalString(m.IdempotencyKey),
		},
	}, nil
}

func toEventsJSON(events []eventstore.Event) ([]eventJSON, error) {
	out := make([]eventJSON, 0, len(events))
	for _, e := range events {
		j, err := toEventJSON(e)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// streamExists reports whether a subscription has any event.
func streamExists(ctx context.Context, q eventstore.Querier, id uuid.UUID) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND stream_type = $2)`,
		id, eventstore.SubscriptionStream).Scan(&ok)
	return ok, err
}

// version reads an optional integer parameter in [min, max]; ok is false when it is absent or faulty.
func (q *query) version(name string, min int64) (int64, bool) {
	v, given := q.lookup(name)
	if !given {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil:
		q.malformed = append(q.malformed, FieldError{name, fmt.Sprintf("must be an integer, got %q", v)})
	case n < min:
		q.invalid = append(q.invalid, FieldError{name, fmt.Sprintf("must be at least %d", min)})
	default:
		return n, true
	}
	return 0, false
}

// instant reads an optional RFC 3339 time. It keeps PostgreSQL's microseconds by truncating, so
// "occurred at or before t" stays exact.
func (q *query) instant(name string) (time.Time, bool) {
	v, given := q.lookup(name)
	if !given {
		return time.Time{}, false
	}
	t, err := parseRFC3339(v)
	if err != nil {
		q.malformed = append(q.malformed, FieldError{name, fmt.Sprintf("must be an RFC 3339 time like 2026-01-01T00:00:00Z, got %q", v)})
		return time.Time{}, false
	}
	return t.Truncate(time.Microsecond).UTC(), true
}

// ---------------------------------------------------------------- GET /v1/subscriptions/{id}/events

type eventPageJSON struct {
	Data             []eventJSON `json:"data"`
	HasMore          bool        `json:"has_more"`
	NextAfterVersion *int64      `json:"next_after_version"`
}

func (a *API) listSubscriptionEvents(w http.ResponseWriter, r *http.Request) {
	id, p := pathUUID(r, "id")
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	q := parseQuery(r, "after_version", "limit")
	after, _ := q.version("after_version", 0)
	limit := q.integer("limit", 1, maxAuditLimit, defaultAuditLimit)
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}
	upTo := after + int64(limit) + 1 // versions are 1, 2, 3…: one more than a page tells has_more
	if upTo < after {
		upTo = 0 // overflow: no upper bound
	}
	events, err := eventstore.Load(r.Context(), a.db, id, eventstore.LoadOptions{AfterVersion: after, UpToVersion: upTo})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(events) == 0 {
		exists, err := streamExists(r.Context(), a.db, id)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if !exists {
			a.fail(w, r, domain.ErrSubscriptionNotFound)
			return
		}
	}
	out := eventPageJSON{}
	if len(events) > limit {
		events = events[:limit]
		out.HasMore = true
		last := events[len(events)-1].Version
		out.NextAfterVersion = &last
	}
	if out.Data, err = toEventsJSON(events); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// ---------------------------------------------------------------- GET /v1/subscriptions/{id}/replay

type replayJSON struct {
	AsOf         time.Time        `json:"as_of"`
	Version      int64            `json:"version"`
	Subscription subscriptionJSON `json:"subscription"`
	Events       []eventJSON      `json:"events"`
}

// point is a point of a subscription's history: a time (inclusive) or a version.
type point struct {
	name    string // the parameter that gave it, for problems
	asOf    time.Time
	version int64
}

func (p point) options() eventstore.LoadOptions {
	if p.version > 0 {
		return eventstore.LoadOptions{UpToVersion: p.version}
	}
	return eventstore.LoadOptions{Until: p.asOf}
}

// folded is a subscription's state at a point, with the events folded to reach it.
type folded struct {
	state  domain.Subscription
	events []eventstore.Event
	asOf   time.Time
}

// fold replays a subscription up to a point. It answers the problem for a subscription that does
// not exist (404 not-found), one that did not exist yet at that time (404 not-yet-existing), and
// a version beyond its history (422).
func fold(ctx context.Context, db eventstore.Querier, id uuid.UUID, at point) (folded, *Problem, error) {
	s, events, err := eventstore.LoadSubscription(ctx, db, id, at.options())
	if err != nil {
		return folded{}, nil, err
	}
	if !s.Exists() || (at.version > 0 && s.Version < at.version) {
		exists := s.Exists()
		if !exists {
			if exists, err = streamExists(ctx, db, id); err != nil {
				return folded{}, nil, err
			}
		}
		switch {
		case !exists:
			return folded{}, problemFor(domain.ErrSubscriptionNotFound), nil
		case at.version > 0:
			return folded{}, invalidFields([]FieldError{{at.name,
				fmt.Sprintf("the subscription's history has %d events; %s %d is beyond it", s.Version, at.name, at.version)}}), nil
		default:
			return folded{}, problem(http.StatusNotFound, "not-yet-existing", "Subscription did not exist yet",
				fmt.Sprintf("the subscription had no events at or before %s (%s)", at.asOf.Format(time.RFC3339Nano), at.name)), nil
		}
	}
	f := folded{state: s, events: events, asOf: at.asOf}
	if at.version > 0 {
		f.asOf = events[len(events)-1].OccurredAt
	}
	return f, nil, nil
}

func (a *API) replaySubscription(w http.ResponseWriter, r *http.Request) {
	id, p := pathUUID(r, "id")
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	q := parseQuery(r, "as_of", "version")
	asOf, _ := q.instant("as_of")
	version, versionOK := q.version("version", 1)
	_, asOfGiven := q.lookup("as_of")
	_, versionGiven := q.lookup("version")
	switch {
	case asOfGiven && versionGiven:
		q.invalid = append(q.invalid, FieldError{"version", "give either as_of or version, not both"})
	case !asOfGiven && !versionGiven:
		q.invalid = append(q.invalid, FieldError{"as_of", "required: as_of (an RFC 3339 time) or version (a number ≥ 1)"})
	}
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}
	at := point{name: "as_of", asOf: asOf}
	if versionOK {
		at = point{name: "version", version: version}
	}
	var out replayJSON
	err := a.readModel(r.Context(), func(tx pgx.Tx) error {
		f, p, err := fold(r.Context(), tx, id, at)
		if err != nil || p != nil {
			return problemOrError(p, err)
		}
		out = replayJSON{AsOf: f.asOf, Version: f.state.Version, Subscription: toSubscriptionJSON(f.state)}
		out.Events, err = toEventsJSON(f.events)
		return err
	})
	a.answer(w, r, out, err)
}

// answer writes out, or the problem or error that prevented it.
func (a *API) answer(w http.ResponseWriter, r *http.Request, out any, err error) {
	var prob *Problem
	switch {
	case errors.As(err, &prob):
		writeProblem(w, r, prob)
	case err != nil:
		a.fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

// ---------------------------------------------------------------- GET /v1/subscriptions/{id}/diff

type diffJSON struct {
	From    diffPointJSON `json:"from"`
	To      diffPointJSON `json:"to"`
	Changes []changeJSON  `json:"changes"`
	Events  []eventJSON   `json:"events"`
}

type diffPointJSON struct {
	Version int64     `json:"version"`
	AsOf    time.Time `json:"as_of"`
}

type changeJSON struct {
	Field string          `json:"field"`
	From  json.RawMessage `json:"from"`
	To    json.RawMessage `json:"to"`
}

// subscriptionChanges compares two subscriptions field by field (top-level fields of the
// Subscription JSON, nested objects and lists as whole values), in the fields' order.
func subscriptionChanges(from, to subscriptionJSON) ([]changeJSON, error) {
	changes := []changeJSON{}
	fv, tv := reflect.ValueOf(from), reflect.ValueOf(to)
	for i := range fv.NumField() {
		name, _, _ := strings.Cut(fv.Type().Field(i).Tag.Get("json"), ",")
		a, err := json.Marshal(fv.Field(i).Interface())
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(tv.Field(i).Interface())
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(a, b) {
			changes = append(changes, changeJSON{Field: name, From: a, To: b})
		}
	}
	return changes, nil
}

func (a *API) diffSubscription(w http.ResponseWriter, r *http.Request) {
	id, p := pathUUID(r, "id")
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	q := parseQuery(r, "from_version", "to_version", "from", "to")
	fromVersion, fromVersionOK := q.version("from_version", 1)
	toVersion, toVersionOK := q.version("to_version", 1)
	fromTime, fromTimeOK := q.instant("from")
	toTime, toTimeOK := q.instant("to")
	given := func(name string) bool { _, ok := q.lookup(name); return ok }
	byVersion := given("from_version") || given("to_version")
	byTime := given("from") || given("to")
	switch {
	case byVersion && byTime:
		q.invalid = append(q.invalid, FieldError{"from", "give from_version and to_version, or from and to, not a mix"})
	case byVersion:
		for _, name := range []string{"from_version", "to_version"} {
			if !given(name) {
				q.invalid = append(q.invalid, FieldError{name, "required with the other version"})
			}
		}
		if fromVersionOK && toVersionOK && toVersion <= fromVersion {
			q.invalid = append(q.invalid, FieldError{"to_version", "must be greater than from_version"})
		}
	case byTime:
		for _, name := range []string{"from", "to"} {
			if !given(name) {
				q.invalid = append(q.invalid, FieldError{name, "required with the other time"})
			}
		}
		if fromTimeOK && toTimeOK && !toTime.After(fromTime) {
			q.invalid = append(q.invalid, FieldError{"to", "must be after from"})
		}
	default:
		q.invalid = append(q.invalid, FieldError{"from_version", "required: from_version and to_version, or from and to (RFC 3339 times)"})
	}
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}
	fromAt, toAt := point{name: "from", asOf: fromTime}, point{name: "to", asOf: toTime}
	if byVersion {
		fromAt, toAt = point{name: "from_version", version: fromVersion}, point{name: "to_version", version: toVersion}
	}
	var out diffJSON
	err := a.readModel(r.Context(), func(tx pgx.Tx) error {
		// One snapshot for both ends: the same history.
		to, p, err := fold(r.Context(), tx, id, toAt)
		if err != nil || p != nil {
			return problemOrError(p, err)
		}
		from, p, err := fold(r.Context(), tx, id, fromAt)
		if err != nil || p != nil {
			return problemOrError(p, err)
		}
		out.From = diffPointJSON{Version: from.state.Version, AsOf: from.asOf}
		out.To = diffPointJSON{Version: to.state.Version, AsOf: to.asOf}
		if out.Changes, err = subscriptionChanges(toSubscriptionJSON(from.state), toSubscriptionJSON(to.state)); err != nil {
			return err
		}
		out.Events, err = toEventsJSON(to.events[from.state.Version:])
		return err
	})
	a.answer(w, r, out, err)
}

func problemOrError(p *Problem, err error) error {
	if err != nil {
		return err
	}
	return p
}

// ---------------------------------------------------------------- GET /v1/events

type globalPageJSON struct {
	Data              []globalEventJSON `json:"data"`
	HasMore           bool              `json:"has_more"`
	NextAfterPosition int64             `json:"next_after_position"`
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "after_position", "limit", "type")
	afterPosition, _ := q.version("after_position", 0)
	limit := q.integer("limit", 1, maxAuditLimit, defaultAuditLimit)
	eventType := q.enum("type", domain.EventTypes())
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}
	ctx := r.Context()
	cursor := eventstore.Position{}
	if afterPosition > 0 {
		var txid int64
		err := a.db.QueryRow(ctx, `SELECT transaction_id::text::bigint FROM events WHERE global_position = $1`, afterPosition).Scan(&txid)
		if errors.Is(err, pgx.ErrNoRows) {
			writeProblem(w, r, invalidFields([]FieldError{{"after_position", fmt.Sprintf("no event has global position %d", afterPosition)}}))
			return
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		cursor = eventstore.Position{TransactionID: uint64(txid), GlobalPosition: afterPosition}
	}

	out := globalPageJSON{Data: []globalEventJSON{}, NextAfterPosition: afterPosition}
	if eventType == nil {
		// Unfiltered: one read, one event more than the page to tell has_more.
		events, err := eventstore.ReadAll(ctx, a.db, cursor, limit+1)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if len(events) > limit {
			events, out.HasMore = events[:limit], true
		}
		for _, e := range events {
			if err := out.add(e); err != nil {
				a.fail(w, r, err)
				return
			}
		}
		if len(events) > 0 {
			out.NextAfterPosition = events[len(events)-1].Position.GlobalPosition
		}
		writeJSON(w, http.StatusOK, out)
		return
	}

	// Filtered: read on until the page holds limit events of the type and one more is seen
	// (has_more), the log is exhausted, or the scan budget is spent. The cursor is the last
	// event read, unless the page is full: then it is the page's last event, and the events
	// between it and the next match are read again by the next page (none is skipped).
	var matches []eventstore.Event
	var lastRead eventstore.Position
	read, exhausted := 0, false
	for len(matches) <= limit && read < maxGlobalScan && !exhausted {
		batch, err := eventstore.ReadAll(ctx, a.db, cursor, min(globalScanBatch, maxGlobalScan-read))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		exhausted = len(batch) < min(globalScanBatch, maxGlobalScan-read)
		for _, e := range batch {
			read++
			cursor, lastRead = e.Position, e.Position
			if e.Type == *eventType {
				matches = append(matches, e)
				if len(matches) > limit {
					break
				}
			}
		}
	}
	switch {
	case len(matches) > limit:
		matches, out.HasMore = matches[:limit], true
		out.NextAfterPosition = matches[limit-1].Position.GlobalPosition
	case read > 0:
		out.HasMore = !exhausted
		out.NextAfterPosition = lastRead.GlobalPosition
	}
	for _, e := range matches {
		if err := out.add(e); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (out *globalPageJSON) add(e eventstore.Event) error {
	j, err := toEventJSON(e)
	if err != nil {
		return err
	}
	out.Data = append(out.Data, globalEventJSON{StreamID: e.StreamID.String(), StreamType: e.StreamType,
		GlobalPosition: e.Position.GlobalPosition, eventJSON: j})
	return nil
}
