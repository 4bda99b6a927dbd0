package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

// TestEveryEventTypeHasASchemaVersion: writers can write every type the domain defines, the
// store knows no type the domain does not, and every type's chain of upcasters is complete from
// version 1, so every version ever written stays readable.
func TestEveryEventTypeHasASchemaVersion(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		current, ok := eventstore.CurrentSchemaVersion(typ)
		if !ok {
			t.Errorf("%s has no current schema version", typ)
			continue
		}
		readable := eventstore.ReadableSchemaVersions(typ)
		want := make([]int, current)
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(readable, want) {
			t.Errorf("%s: readable versions %v, want %v (a missing upcaster?)", typ, readable, want)
		}
	}
	if got := slices.Sorted(maps.Keys(eventstore.CurrentSchemaVersions())); !slices.Equal(got, domain.EventTypes()) {
		t.Errorf("schema versions are kept for %v, but the domain defines %v", got, domain.EventTypes())
	}
	if _, ok := eventstore.CurrentSchemaVersion("subscription.teleported"); ok {
		t.Error("an unknown type has a schema version")
	}
	if v, _ := eventstore.CurrentSchemaVersion("subscription.created"); v != 2 {
		t.Errorf("subscription.created is at version %d, want 2 (billing_anchor)", v)
	}
}

// decideCreate decides a creation, with a trial of trialDays (0: none).
func decideCreate(t *testing.T, id string, trialDays int, now time.Time) domain.SubscriptionCreated {
	t.Helper()
	plan, err := domain.DefaultCatalog().Plan("pro_monthly")
	if err != nil {
		t.Fatal(err)
	}
	events, err := domain.Decide(domain.Subscription{}, domain.Create{SubscriptionID: id, CustomerID: "cus_v1",
		Plan: plan, Seats: 3, TrialDays: &trialDays}, now)
	if err != nil {
		t.Fatal(err)
	}
	return events[0].(domain.SubscriptionCreated)
}

// asV1 is the v1 shape of a created event: its JSON without billing_anchor.
func asV1(t *testing.T, e domain.SubscriptionCreated) json.RawMessage {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	delete(fields, "billing_anchor")
	v1, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return v1
}

// TestUpcastCreatedV1: the v1→v2 upcaster derives billing_anchor exactly as Decide sets it,
// with and without a trial, and is a no-op on v2 data.
func TestUpcastCreatedV1(t *testing.T) {
	for _, trialDays := range []int{0, 14} {
		want := decideCreate(t, uuid.NewString(), trialDays, t0)
		stored := eventstore.Event{ID: uuid.New(), StreamID: uuid.New(), Version: 1,
			Type: "subscription.created", SchemaVersion: 1, Data: asV1(t, want)}
		got, err := eventstore.DecodeEvent(stored)
		if err != nil {
			t.Fatalf("trial %d: decode v1: %v", trialDays, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("trial %d: v1 decoded to\n%+v\nwant\n%+v", trialDays, got, want)
		}

		v2, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		stored.SchemaVersion, stored.Data = 2, v2
		if got, err := eventstore.DecodeEvent(stored); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("trial %d: decode v2: %+v, %v", trialDays, got, err)
		}
	}

	// v1 events written after billing_anchor was added (every store from before v2 holds them)
	// keep the anchor they recorded.
	late := `{"billing_anchor": "2026-03-01T09:00:00Z", "period_start": "2026-03-14T09:00:00Z"}`
	up, err := eventstore.Upcast(eventstore.Event{Type: "subscription.created", SchemaVersion: 1, Data: json.RawMessage(late)})
	if err != nil || !strings.Contains(string(up), `"billing_anchor": "2026-03-01T09:00:00Z"`) {
		t.Errorf("upcast of a v1 event that has billing_anchor: %s, %v; want it unchanged", up, err)
	}

	// A v1 event without anything to derive the anchor from is refused.
	for _, data := range []string{
		`{"trial_end": null}`,
		`[]`,
	} {
		_, err := eventstore.Upcast(eventstore.Event{Type: "subscription.created", SchemaVersion: 1, Data: json.RawMessage(data)})
		var unreadable *eventstore.UnreadableEventError
		if !errors.As(err, &unreadable) {
			t.Errorf("upcast of v1 %s: %v, want an *UnreadableEventError", data, err)
		}
	}
}

// TestEncodeWritesCurrentVersions: encoding writes each type's current version (v2 for created).
func TestEncodeWritesCurrentVersions(t *testing.T) {
	created := decideCreate(t, uuid.NewString(), 0, t0)
	encoded, err := eventstore.EncodeEvents([]domain.Event{created, domain.Paused{PausedAt: t0}}, eventstore.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	if encoded[0].SchemaVersion != 2 || encoded[1].SchemaVersion != 1 {
		t.Errorf("encoded schema versions %d, %d; want 2, 1", encoded[0].SchemaVersion, encoded[1].SchemaVersion)
	}
	if !strings.Contains(string(encoded[0].Data), `"billing_anchor"`) {
		t.Errorf("v2 created data lacks billing_anchor: %s", encoded[0].Data)
	}
}

// insertRaw writes an event row directly in SQL, as an older writer would have.
func insertRaw(t *testing.T, db *pgxpool.Pool, stream uuid.UUID, version int64, typ string, schemaVersion int, data string, at time.Time) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := db.Exec(context.Background(), `INSERT INTO events
		(stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
		VALUES ($1, 'subscription', $2, $3, $4, $5, $6::jsonb, '{}', $7)`,
		stream, version, id, typ, schemaVersion, data, at)
	if err != nil {
		t.Fatalf("insert %s v%d: %v", typ, schemaVersion, err)
	}
	return id
}

// TestLoadSubscriptionUpcastsOldEvents: a stream whose created event is a v1 row written in SQL,
// followed by a seat change appended today, loads to the same state as the same history written
// at the current versions.
func TestLoadSubscriptionUpcastsOldEvents(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	for _, trialDays := range []int{0, 7} {
		id := uuid.New()
		created := decideCreate(t, id.String(), trialDays, t0)
		insertRaw(t, db, id, 1, "subscription.created", 1, string(asV1(t, created)), t0)

		want := domain.Evolve(domain.Subscription{}, created)
		seats, err := domain.Decide(want, domain.ChangeSeats{Seats: 5}, t0.Add(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range seats {
			want = domain.Evolve(want, e)
		}
		encoded, err := eventstore.EncodeEvents(seats, eventstore.Metadata{Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.Append(ctx, db, eventstore.Stream{ID: id, Type: eventstore.SubscriptionStream}, 1, encoded); err != nil {
			t.Fatal(err)
		}

		got, events, err := eventstore.LoadSubscription(ctx, db, id, eventstore.LoadOptions{})
		if err != nil {
			t.Fatalf("trial %d: load: %v", trialDays, err)
		}
		if len(events) != 2 || events[0].SchemaVersion != 1 {
			t.Fatalf("trial %d: loaded %d events, first at schema version %d", trialDays, len(events), events[0].SchemaVersion)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("trial %d: loaded\n%+v\nwant\n%+v", trialDays, got, want)
		}
		if got.BillingAnchor.IsZero() {
			t.Errorf("trial %d: no billing anchor after upcasting", trialDays)
		}
	}
}

// TestUnreadableEventsFailLoudly: an unknown type or an unknown schema version in a stream makes
// loading it fail with an error naming the event, its type, its schema version and its stream.
func TestUnreadableEventsFailLoudly(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	created := decideCreate(t, uuid.NewString(), 0, t0)
	v2, err := json.Marshal(created)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		typ           string
		schemaVersion int
		data          string
		want          error
	}{
		{"unknown type", "subscription.teleported", 1, `{"to": "mars"}`, eventstore.ErrUnknownEventType},
		{"unknown version", "subscription.created", 99, string(v2), eventstore.ErrUnknownSchemaVersion},
	} {
		stream := uuid.New()
		insertRaw(t, db, stream, 1, "subscription.created", 2, string(v2), t0)
		bad := insertRaw(t, db, stream, 2, tc.typ, tc.schemaVersion, tc.data, t0.Add(time.Hour))

		_, _, err := eventstore.LoadSubscription(ctx, db, stream, eventstore.LoadOptions{})
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: load: %v, want %v", tc.name, err, tc.want)
		}
		var unreadable *eventstore.UnreadableEventError
		if !errors.As(err, &unreadable) || unreadable.EventID != bad || unreadable.StreamID != stream ||
			unreadable.Type != tc.typ || unreadable.SchemaVersion != tc.schemaVersion || unreadable.StreamVersion != 2 {
			t.Errorf("%s: error %#v does not name the event", tc.name, err)
		}
		for _, part := range []string{bad.String(), stream.String(), tc.typ, "schema version " + strconv.Itoa(tc.schemaVersion)} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, part)
			}
		}
	}
}
