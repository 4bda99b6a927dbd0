package eventstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
	"github.com/billing-oss/billing/internal/testenv"
)

// FuzzDecodeSubscriptionEvent feeds DecodeEvent, the entry point every stored event
// is read through (upcasting, then strict decoding), arbitrary types, schema versions and data.
// Properties:
//   - it never panics, and never changes the data it was given (upcasters are pure);
//   - a refusal is an *UnreadableEventError naming the event, classified ErrUnknownEventType for
//     an unknown type and ErrUnknownSchemaVersion for a version outside 1..current;
//   - an accepted event has a known type at a readable version, and written again by today's
//     writer (EncodeEvents, at the current version) it reads back the same;
//   - a v1 created event without billing_anchor gets the trial end or, without a trial, the
//     period start, as Decide sets it.
func FuzzDecodeSubscriptionEvent(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzDecodeSubscriptionEvent", decodeStoredSeeds(f))
	f.Fuzz(func(t *testing.T, typ string, schemaVersion int, data []byte) {
		stored := eventstore.Event{ID: fuzzEventID, StreamID: fuzzStreamID, StreamType: eventstore.SubscriptionStream,
			Version: 7, Type: typ, SchemaVersion: schemaVersion, Data: json.RawMessage(data)}
		original := bytes.Clone(data)
		e, err := eventstore.DecodeEvent(stored)
		if !bytes.Equal(data, original) {
			t.Fatalf("decoding changed the stored data from %q to %q", original, data)
		}
		current, known := eventstore.CurrentSchemaVersion(typ)
		if err != nil {
			checkUnreadable(t, err, stored)
			if e != nil {
				t.Errorf("an error came with an event: %#v", e)
			}
			if !known && !errors.Is(err, eventstore.ErrUnknownEventType) {
				t.Errorf("type %q is unknown, yet the error is %v", typ, err)
			}
			if known && (schemaVersion < 1 || schemaVersion > current) && !errors.Is(err, eventstore.ErrUnknownSchemaVersion) {
				t.Errorf("%s v%d is not readable (current %d), yet the error is %v", typ, schemaVersion, current, err)
			}
			return
		}
		if !known || !slices.Contains(eventstore.ReadableSchemaVersions(typ), schemaVersion) || e == nil || e.EventType() != typ {
			t.Fatalf("DecodeEvent(%s v%d, %q) = %#v; accepted an unreadable type or version", typ, schemaVersion, data, e)
		}

		// Upcasting is deterministic, and the identity at the current version.
		up1, err1 := eventstore.Upcast(stored)
		up2, err2 := eventstore.Upcast(stored)
		if err1 != nil || err2 != nil || !bytes.Equal(up1, up2) {
			t.Fatalf("Upcast is not deterministic: %q (%v), then %q (%v)", up1, err1, up2, err2)
		}
		if schemaVersion == current && !bytes.Equal(up1, data) {
			t.Errorf("Upcast changed data already at the current version: %q → %q", data, up1)
		}

		// Today's writer writes what today's reader reads back identically.
		encoded, err := eventstore.EncodeEvents([]domain.Event{e}, eventstore.Metadata{})
		if err != nil {
			t.Fatalf("an event read from %q cannot be written again: %v", data, err)
		}
		rewritten := stored
		rewritten.SchemaVersion, rewritten.Data = encoded[0].SchemaVersion, encoded[0].Data
		if rewritten.SchemaVersion != current {
			t.Errorf("the writer wrote %s at version %d, want the current %d", typ, rewritten.SchemaVersion, current)
		}
		again, err := eventstore.DecodeEvent(rewritten)
		if err != nil {
			t.Fatalf("the event read from %q, written again as %s, does not read back: %v", data, rewritten.Data, err)
		}
		if !sameEvent(again, e) {
			t.Errorf("%q reads as %#v, but written again (%s) reads as %#v", data, e, rewritten.Data, again)
		}

		if c, ok := e.(domain.SubscriptionCreated); ok && schemaVersion == 1 {
			var fields map[string]json.RawMessage
			if json.Unmarshal(data, &fields) == nil && fields["billing_anchor"] == nil {
				want := c.PeriodStart
				if c.TrialEnd != nil {
					want = *c.TrialEnd
				}
				if !c.BillingAnchor.Equal(want) {
					t.Errorf("v1 created %q upcast to billing anchor %s, want %s", data, c.BillingAnchor, want)
				}
			}
		}
	})
}

var (
	fuzzEventID  = uuid.MustParse("0190f5c2-7d5e-7c3a-9a51-2f4d1c9e8b7a")
	fuzzStreamID = uuid.MustParse("0190f5c2-7d5e-7c3a-9a51-000000000001")
)

// checkUnreadable: err is an *UnreadableEventError naming the stored event.
func checkUnreadable(t *testing.T, err error, stored eventstore.Event) {
	t.Helper()
	var unreadable *eventstore.UnreadableEventError
	if !errors.As(err, &unreadable) {
		t.Fatalf("error %v (%T) is not an *UnreadableEventError", err, err)
	}
	if unreadable.EventID != stored.ID || unreadable.StreamID != stored.StreamID || unreadable.Type != stored.Type ||
		unreadable.SchemaVersion != stored.SchemaVersion || unreadable.StreamVersion != stored.Version || unreadable.Err == nil {
		t.Errorf("error %#v does not name the event %s (stream %s version %d, %s v%d)", unreadable, stored.ID,
			stored.StreamID, stored.Version, stored.Type, stored.SchemaVersion)
	}
}

// sameEvent compares events by their JSON, which is what the store keeps: a time decoded from
// "+00:00" and one decoded from "Z" are the same time but not reflect.DeepEqual.
func sameEvent(a, b domain.Event) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && reflect.TypeOf(a) == reflect.TypeOf(b) && bytes.Equal(ja, jb)
}

func decodeStoredSeeds(tb testing.TB) []fuzzcorpus.Seed {
	tb.Helper()
	at := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	v2 := map[bool]string{} // created at v2, with and without a trial
	for _, trial := range []bool{false, true} {
		days := 0
		if trial {
			days = 14
		}
		plan, err := domain.DefaultCatalog().Plan("pro_monthly")
		if err != nil {
			tb.Fatal(err)
		}
		events, err := domain.Decide(domain.Subscription{}, domain.Create{SubscriptionID: "sub_1", CustomerID: "cus_1",
			Plan: plan, Seats: 3, TrialDays: &days}, at)
		if err != nil {
			tb.Fatal(err)
		}
		data, err := json.Marshal(events[0])
		if err != nil {
			tb.Fatal(err)
		}
		v2[trial] = string(data)
	}
	withoutAnchor := func(s string) string {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &fields); err != nil {
			tb.Fatal(err)
		}
		delete(fields, "billing_anchor")
		b, err := json.Marshal(fields)
		if err != nil {
			tb.Fatal(err)
		}
		return string(b)
	}
	const created = "subscription.created"
	paused := `{"paused_at": "2026-02-01T00:00:00Z"}`
	return []fuzzcorpus.Seed{
		fuzzcorpus.S("created-v2", created, 2, []byte(v2[false])),
		fuzzcorpus.S("created-v2-trial", created, 2, []byte(v2[true])),
		fuzzcorpus.S("created-v1-no-anchor", created, 1, []byte(withoutAnchor(v2[false]))),
		fuzzcorpus.S("created-v1-trial-no-anchor", created, 1, []byte(withoutAnchor(v2[true]))),
		fuzzcorpus.S("created-v1-with-anchor", created, 1, []byte(v2[false])),
		fuzzcorpus.S("created-v1-trial-end-null", created, 1, []byte(strings.Replace(withoutAnchor(v2[false]), `{`, `{"trial_end":null,`, 1))),
		fuzzcorpus.S("created-v1-trial-end-number", created, 1, []byte(strings.Replace(withoutAnchor(v2[false]), `{`, `{"trial_end":12,`, 1))),
		fuzzcorpus.S("created-v1-nothing-to-derive", created, 1, []byte(`{"trial_end": null}`)),
		fuzzcorpus.S("created-v1-not-object", created, 1, []byte(`[]`)),
		fuzzcorpus.S("created-v1-null", created, 1, []byte(`null`)),
		fuzzcorpus.S("created-v1-malformed", created, 1, []byte(`{"period_start": `)),
		fuzzcorpus.S("created-v1-duplicate-anchor", created, 1, []byte(strings.Replace(v2[false], `{`, `{"billing_anchor":"x",`, 1))),
		fuzzcorpus.S("created-v1-anchor-other-case", created, 1, []byte(strings.Replace(withoutAnchor(v2[false]), `{`, `{"BILLING_ANCHOR":"2020-01-01T00:00:00Z",`, 1))),
		fuzzcorpus.S("created-v2-without-anchor", created, 2, []byte(withoutAnchor(v2[false]))),
		fuzzcorpus.S("created-v3-future", created, 3, []byte(v2[false])),
		fuzzcorpus.S("created-v0", created, 0, []byte(v2[false])),
		fuzzcorpus.S("created-negative-version", created, -1<<31, []byte(v2[false])),
		fuzzcorpus.S("paused-v1", "subscription.paused", 1, []byte(paused)),
		fuzzcorpus.S("paused-v2-future", "subscription.paused", 2, []byte(paused)),
		fuzzcorpus.S("paused-unknown-field", "subscription.paused", 1, []byte(`{"paused_at": "2026-02-01T00:00:00Z", "by": "ops"}`)),
		fuzzcorpus.S("paused-offset-time", "subscription.paused", 1, []byte(`{"paused_at": "2026-02-01T00:00:00+00:00"}`)),
		fuzzcorpus.S("seats-1e400", "subscription.seats_changed", 1, []byte(`{"seats": 1e400}`)),
		fuzzcorpus.S("unknown-type", "subscription.teleported", 1, []byte(`{"to": "mars"}`)),
		fuzzcorpus.S("empty-type", "", 1, []byte(`{}`)),
		fuzzcorpus.S("type-in-other-case", "Subscription.Created", 2, []byte(v2[false])),
		fuzzcorpus.S("empty-data", "subscription.resumed", 1, []byte(``)),
		fuzzcorpus.S("nul-in-data", "subscription.canceled", 1, []byte("{\"reason\": \"a\x00\", \"canceled_at\": \"2026-02-01T00:00:00Z\"}")),
	}
}

// FuzzLoadStoredEvent stores a row with a fuzzed type, schema version, data and metadata after
// a valid creation, as a hand-written migration or an older writer could have, and loads the
// stream through the store's real read paths (Load with and without a snapshot, and the global
// log). Properties: loading never panics; a row that cannot be read fails the load with an
// *UnreadableEventError naming it (never a bare driver error, never skipped); a readable one
// folds into the state as the stream's second event. One database serves the whole run.
func FuzzLoadStoredEvent(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzLoadStoredEvent", loadStoredSeeds())
	db := testenv.Postgres(f)
	ctx := context.Background()
	plan, err := domain.DefaultCatalog().Plan("pro_monthly")
	if err != nil {
		f.Fatal(err)
	}
	noTrial := 0
	at := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, typ string, schemaVersion int, data, metadata string) {
		stream := uuid.New()
		events, err := domain.Decide(domain.Subscription{}, domain.Create{SubscriptionID: stream.String(), CustomerID: "cus_1",
			Plan: plan, Seats: 3, TrialDays: &noTrial}, at)
		if err != nil {
			t.Fatal(err)
		}
		encoded, err := eventstore.EncodeEvents(events, eventstore.Metadata{Actor: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.Append(ctx, db, eventstore.Stream{ID: stream, Type: eventstore.SubscriptionStream}, 0, encoded); err != nil {
			t.Fatal(err)
		}
		id := uuid.New()
		_, err = db.Exec(ctx, `INSERT INTO events
			(stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
			VALUES ($1, 'subscription', 2, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7)`,
			stream, id, typ, schemaVersion, data, metadata, at.Add(time.Hour))
		if err != nil {
			return // not a row Postgres stores (not JSON, a NUL, a version beyond int4…): nothing to read
		}
		var stored eventstore.Event
		if err := db.QueryRow(ctx, `SELECT data FROM events WHERE event_id = $1`, id).Scan(&stored.Data); err != nil {
			t.Fatal(err)
		}
		stored.ID, stored.StreamID, stored.Version, stored.Type, stored.SchemaVersion = id, stream, 2, typ, schemaVersion
		_, wantErr := eventstore.DecodeEvent(stored)

		check := func(path string, s domain.Subscription, err error) {
			t.Helper()
			if err != nil {
				checkUnreadable(t, err, stored)
				return
			}
			if wantErr != nil {
				t.Errorf("%s read the row the decoder refuses (%v)", path, wantErr)
			}
			if s.Version != 2 {
				t.Errorf("%s folded the stream to version %d, want 2", path, s.Version)
			}
		}
		s, loaded, err := eventstore.LoadSubscription(ctx, db, stream, eventstore.LoadOptions{})
		check("LoadSubscription", s, err)
		if err == nil && (len(loaded) != 2 || loaded[1].ID != id) {
			t.Errorf("LoadSubscription returned %d events, want the 2 stored", len(loaded))
		}
		s, _, err = eventstore.LoadSubscriptionWithSnapshot(ctx, db, stream)
		check("LoadSubscriptionWithSnapshot", s, err)
	})
}

func loadStoredSeeds() []fuzzcorpus.Seed {
	const meta = `{"actor": "ops", "source": "migration 42"}`
	paused := `{"paused_at": "2026-01-31T11:00:00Z"}`
	return []fuzzcorpus.Seed{
		fuzzcorpus.S("paused", "subscription.paused", 1, paused, meta),
		fuzzcorpus.S("paused-empty-metadata", "subscription.paused", 1, paused, `{}`),
		fuzzcorpus.S("metadata-wrong-type", "subscription.paused", 1, paused, `{"actor": 5}`),
		fuzzcorpus.S("metadata-array", "subscription.paused", 1, paused, `[]`),
		fuzzcorpus.S("metadata-null", "subscription.paused", 1, paused, `null`),
		fuzzcorpus.S("metadata-string", "subscription.paused", 1, paused, `"actor"`),
		fuzzcorpus.S("metadata-unknown-field", "subscription.paused", 1, paused, `{"actor": "ops", "ip": "10.0.0.1"}`),
		fuzzcorpus.S("metadata-nested", "subscription.paused", 1, paused, `{"correlation_id": {"a": [1, 2]}}`),
		fuzzcorpus.S("metadata-huge-number", "subscription.paused", 1, paused, `{"causation_id": 1e400}`),
		fuzzcorpus.S("data-wrong-type", "subscription.paused", 1, `{"paused_at": 5}`, meta),
		fuzzcorpus.S("data-array", "subscription.seats_changed", 1, `[1, 2]`, meta),
		fuzzcorpus.S("data-null", "subscription.resumed", 1, `null`, meta),
		fuzzcorpus.S("data-unknown-field", "subscription.paused", 1, `{"paused_at": "2026-01-31T11:00:00Z", "by": "ops"}`, meta),
		fuzzcorpus.S("data-duplicate-key", "subscription.paused", 1, `{"paused_at": 1, "paused_at": "2026-01-31T11:00:00Z"}`, meta),
		fuzzcorpus.S("unknown-type", "subscription.teleported", 1, `{"to": "mars"}`, meta),
		fuzzcorpus.S("unknown-version", "subscription.paused", 99, paused, meta),
		fuzzcorpus.S("version-zero", "subscription.paused", 0, paused, meta),
		fuzzcorpus.S("created-v1-again", "subscription.created", 1, `{"period_start": "2026-01-31T11:00:00Z"}`, meta),
		fuzzcorpus.S("not-json", "subscription.paused", 1, `{paused_at}`, meta),
	}
}
