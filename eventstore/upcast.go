package eventstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"
)

// Schema evolution. History is never rewritten: an event keeps the schema version it was
// written with, and a reader upcasts it to the current version of its type by a chain of small
// pure functions over the raw JSON, one per step (v1→v2, v2→v3, ...), before decoding it.
// Writers always write the current version of each type.
//
// To change the shape of an event type: bump its entry in currentSchemaVersions, add the
// upcaster from the previous version to upcasters (a test checks every chain is complete), and
// record the change in the log below.
//
// Change log:
//   - 2026-11-25 subscription.created v2: billing_anchor is required. The earliest v1 data has
//     none; the upcaster derives it as domain.Decide does (the trial end when trial_end is
//     present, else period_start). v1 data written after billing_anchor was added already has
//     it, and keeps it unchanged: stores from before this change hold such events.

// Upcaster turns the data of an event at one schema version into the data of the next version.
// It must be pure: the same input always gives the same output, with no I/O.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// upcastStep keys an upcaster by the event type and the schema version it reads.
type upcastStep struct {
	Type string
	From int
}

// currentSchemaVersions is the schema version writers write, per event type. Every type in
// domain.EventTypes() has an entry (a test checks).
var currentSchemaVersions = map[string]int{
	"subscription.created":                2,
	"subscription.plan_changed":           1,
	"subscription.plan_change_scheduled":  1,
	"subscription.seats_changed":          1,
	"subscription.cancellation_scheduled": 1,
	"subscription.cancellation_undone":    1,
	"subscription.canceled":               1,
	"subscription.paused":                 1,
	"subscription.resumed":                1,
	"subscription.payment_method_changed": 1,
	"subscription.renewed":                1,
	"subscription.trial_will_end":         1,
	"subscription.past_due":               1,
	"subscription.payment_recovered":      1,
	"subscription.marked_unpaid":          1,
	"subscription.upgrade_failed":         1,
	"invoice.created":                     1,
	"invoice.payment_succeeded":           1,
	"invoice.payment_failed":              1,
	"invoice.refunded":                    1,
	"invoice.voided":                      1,
	"invoice.marked_uncollectible":        1,
	"customer.invoice_issued":             1,
	"customer.credit_granted":             1,
	"upgrade.started":                     1,
	"upgrade.invoiced":                    1,
	"upgrade.charged":                     1,
	"upgrade.plan_applied":                1,
	"upgrade.completed":                   1,
	"upgrade.compensating":                1,
	"upgrade.aborted":                     1,
}

// upcasters holds one step per (type, from-version).
// An upcaster must reproduce exactly the event the domain would have written; one that changes
// what a history folds to must also bump SubscriptionStateSchemaVersion, or snapshots taken
// before it would disagree with a full replay.
var upcasters = map[upcastStep]Upcaster{
	{"subscription.created", 1}: upcastCreatedV1,
}

// CurrentSchemaVersion returns the schema version written for an event type, and whether the
// type is known.
func CurrentSchemaVersion(eventType string) (int, bool) {
	v, ok := currentSchemaVersions[eventType]
	return v, ok
}

// CurrentSchemaVersions returns a copy of the current schema version of every event type.
func CurrentSchemaVersions() map[string]int { return maps.Clone(currentSchemaVersions) }

// ReadableSchemaVersions lists, ascending, the schema versions of an event type a reader can
// read: the current one and every older one from which a chain of upcasters reaches it. It is
// nil for an unknown type.
func ReadableSchemaVersions(eventType string) []int {
	current, ok := currentSchemaVersions[eventType]
	if !ok {
		return nil
	}
	versions := []int{current}
	for v := current - 1; v >= 1; v-- {
		if _, ok := upcasters[upcastStep{eventType, v}]; !ok {
			break
		}
		versions = append(versions, v)
	}
	slices.Sort(versions)
	return versions
}

// ErrUnknownEventType and ErrUnknownSchemaVersion classify an *UnreadableEventError.
var (
	ErrUnknownEventType     = errors.New("unknown event type")
	ErrUnknownSchemaVersion = errors.New("unknown schema version")
)

// UnreadableEventError reports a stored event a reader cannot read: an unknown type, a schema
// version it has no upcaster chain from, an upcaster that failed, or data that does not decode.
// It names the event so it can be found in the store; Err says why (errors.Is works through it).
type UnreadableEventError struct {
	EventID       uuid.UUID
	Type          string
	SchemaVersion int
	StreamID      uuid.UUID
	StreamVersion int64
	Err           error
}

func (e *UnreadableEventError) Error() string {
	return fmt.Sprintf("unreadable event %s (type %q, schema version %d, stream %s version %d): %v",
		e.EventID, e.Type, e.SchemaVersion, e.StreamID, e.StreamVersion, e.Err)
}

func (e *UnreadableEventError) Unwrap() error { return e.Err }

// Upcast returns e's data at the current schema version of its type, applying the upcasters
// from e.SchemaVersion on. Data already at the current version is returned as is. An unknown
// type, a version newer than the current one or with no chain to it, or a failing step is an
// *UnreadableEventError.
func Upcast(e Event) (json.RawMessage, error) {
	fail := func(err error) error {
		return &UnreadableEventError{EventID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion,
			StreamID: e.StreamID, StreamVersion: e.Version, Err: err}
	}
	current, ok := currentSchemaVersions[e.Type]
	if !ok {
		return nil, fail(ErrUnknownEventType)
	}
	if e.SchemaVersion < 1 || e.SchemaVersion > current {
		return nil, fail(fmt.Errorf("%w: this reader reads %s up to version %d", ErrUnknownSchemaVersion, e.Type, current))
	}
	data := e.Data
	for v := e.SchemaVersion; v < current; v++ {
		step, ok := upcasters[upcastStep{e.Type, v}]
		if !ok {
			return nil, fail(fmt.Errorf("%w: no upcaster from version %d of %s", ErrUnknownSchemaVersion, v, e.Type))
		}
		next, err := step(data)
		if err != nil {
			return nil, fail(fmt.Errorf("upcast %s v%d to v%d: %w", e.Type, v, v+1, err))
		}
		data = next
	}
	return data, nil
}

// upcastCreatedV1 adds billing_anchor to subscription.created v1 data: the trial end when
// trial_end is present (and not null), else period_start — what domain.Decide sets.
func upcastCreatedV1(data json.RawMessage) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	if fields == nil {
		return nil, errors.New("data is not an object")
	}
	if _, ok := fields["billing_anchor"]; ok {
		return data, nil // a later v1 event: already the v2 shape
	}
	anchor, ok := fields["trial_end"]
	if !ok || bytes.Equal(bytes.TrimSpace(anchor), []byte("null")) {
		if anchor, ok = fields["period_start"]; !ok {
			return nil, errors.New("v1 data has neither trial_end nor period_start")
		}
	}
	fields["billing_anchor"] = anchor
	return json.Marshal(fields)
}
