package projections_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
	"github.com/billing-oss/billing/projections"
)

// envelopeFields are the fields of a stream entry, in the order FuzzDecodeEnvelope takes them.
var envelopeFields = []string{"event_id", "stream_id", "stream_type", "version", "type", "schema_version", "data",
	"metadata", "occurred_at", "recorded_at", "global_position", "transaction_id"}

// FuzzDecodeEnvelope feeds projections.Decode, which reads every event a projector applies out
// of its Redis stream entry, any entry: an entry id and each field's value (as Redis returns
// them, strings), with fields left out (bit i of absent drops envelopeFields[i]) or, as a
// client could hand it, one given as a non-string (envelopeFields[absent>>12 - 1], as bytes).
// Properties:
//   - Decode never panics and does not modify the entry;
//   - a refusal is an error that names the entry ("entry <id>") and comes with no event; an
//     entry whose id is not its event's position is refused (valid-other-entry-id);
//   - what decodes is re-encoded by the relay's encoder (projections.Encode, as
//     eventstore/relay publishes it, each value as Redis stores it) into an entry that decodes
//     to the same event and re-encodes to the same entry;
//   - an entry as the relay writes it (a canonical one) re-encodes to exactly itself.
func FuzzDecodeEnvelope(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzDecodeEnvelope", envelopeSeeds())
	f.Fuzz(func(t *testing.T, id string, absent uint32, eventID, streamID, streamType, version, typ, schemaVersion,
		data, metadata, occurredAt, recordedAt, globalPosition, transactionID string) {
		raw := []string{eventID, streamID, streamType, version, typ, schemaVersion, data, metadata, occurredAt,
			recordedAt, globalPosition, transactionID}
		values := map[string]any{}
		for i, k := range envelopeFields {
			switch {
			case absent&(1<<i) != 0:
			case int(absent>>12) == i+1:
				values[k] = []byte(raw[i])
			default:
				values[k] = raw[i]
			}
		}
		given := cloneValues(values)
		where := fmt.Sprintf("Decode(%q, %q)", id, values)

		e, err := projections.Decode(id, values)
		if !reflect.DeepEqual(values, given) {
			t.Fatalf("%s modified the entry", where)
		}
		if err != nil {
			if !reflect.DeepEqual(e, eventstore.Event{}) {
				t.Errorf("%s = %v with an event %+v", where, err, e)
			}
			if !strings.Contains(err.Error(), "entry "+id+":") {
				t.Errorf("%s = %q, which does not name the entry", where, err)
			}
			return
		}
		if id != projections.EntryID(e.Position) {
			t.Fatalf("%s = %+v, whose position is not the entry's id", where, e)
		}

		encoded := asStored(projections.Encode(e))
		back, err := projections.Decode(id, encoded)
		if err != nil {
			t.Fatalf("%s = %+v, re-encoded as %q, does not decode: %v", where, e, encoded, err)
		}
		if !sameEvent(back, e) {
			t.Fatalf("%s = %+v, re-encoded as %q, decodes to %+v", where, e, encoded, back)
		}
		if again := asStored(projections.Encode(back)); !reflect.DeepEqual(again, encoded) {
			t.Fatalf("%s: re-encoding is not stable: %q then %q", where, encoded, again)
		}
		if canonical(encoded, values) && !reflect.DeepEqual(encoded, values) {
			t.Errorf("%s: the relay's entry %q re-encodes as %q", where, values, encoded)
		}
	})
}

// asStored is the entry Redis holds for the relay's fields: go-redis writes every argument as
// a string, integers in decimal.
func asStored(fields map[string]any) map[string]any {
	out := make(map[string]any, len(fields))
	for k, v := range fields {
		switch v := v.(type) {
		case string:
			out[k] = v
		case int:
			out[k] = strconv.Itoa(v)
		case int64:
			out[k] = strconv.FormatInt(v, 10)
		case uint64:
			out[k] = strconv.FormatUint(v, 10)
		default:
			panic(fmt.Sprintf("projections.Encode wrote %s as %T, which the relay does not send", k, v))
		}
	}
	return out
}

// canonical reports whether values could be the relay's own entry: every field, each exactly
// as Encode writes it for the event it decodes to (encoded).
func canonical(encoded, values map[string]any) bool {
	if len(values) != len(encoded) {
		return false
	}
	for k, v := range values {
		s, ok := v.(string)
		if !ok || s != encoded[k] {
			return false
		}
	}
	return true
}

// sameEvent compares events field by field; times by instant and by how they are written
// (their zone may be a different *time.Location with the same offset).
func sameEvent(a, b eventstore.Event) bool {
	sameTime := func(x, y time.Time) bool {
		return x.Equal(y) && x.Format(time.RFC3339Nano) == y.Format(time.RFC3339Nano)
	}
	return a.Position == b.Position && a.StreamID == b.StreamID && a.StreamType == b.StreamType &&
		a.Version == b.Version && a.ID == b.ID && a.Type == b.Type && a.SchemaVersion == b.SchemaVersion &&
		string(a.Data) == string(b.Data) && a.Metadata == b.Metadata &&
		sameTime(a.OccurredAt, b.OccurredAt) && sameTime(a.RecordedAt, b.RecordedAt)
}

func cloneValues(values map[string]any) map[string]any {
	out := make(map[string]any, len(values))
	for k, v := range values {
		if b, ok := v.([]byte); ok {
			v = append([]byte(nil), b...)
		}
		out[k] = v
	}
	return out
}

// envelopeSeeds start from an entry the relay writes and spoil one thing each.
func envelopeSeeds() []fuzzcorpus.Seed {
	at := time.Date(2026, 1, 31, 10, 0, 0, 123_456_000, time.UTC)
	valid := asStored(projections.Encode(eventstore.Event{
		Position: eventstore.Position{TransactionID: 7_001, GlobalPosition: 42},
		StreamID: uuid.MustParse("0195a3c2-7d4e-7000-8000-000000000001"), StreamType: "subscription", Version: 3,
		ID:   uuid.MustParse("0195a3c2-7d4e-7000-8000-0000000000aa"),
		Type: "subscription.seats_changed", SchemaVersion: 1,
		Data:       json.RawMessage(`{"from_seats":2,"seats":3,"proration":null,"changed_at":"2026-01-31T10:00:00Z"}`),
		Metadata:   eventstore.Metadata{CorrelationID: "req_1", Actor: "key:admin", Source: "api", IdempotencyKey: "k1"},
		OccurredAt: at.Truncate(time.Second), RecordedAt: at,
	}))
	const entry = "7001-42"
	seed := func(name, id string, absent uint32, change map[string]string) fuzzcorpus.Seed {
		values := []any{id, absent}
		for _, k := range envelopeFields {
			v, ok := change[k]
			if !ok {
				v = valid[k].(string)
			}
			values = append(values, v)
		}
		return fuzzcorpus.S(name, values...)
	}
	const asString = 0 // no field given as a non-string
	one := func(name, field, value string) fuzzcorpus.Seed {
		return seed(name, entry, asString, map[string]string{field: value})
	}
	bit := func(field string) uint32 {
		for i, k := range envelopeFields {
			if k == field {
				return 1 << i
			}
		}
		panic(field)
	}
	nonString := func(field string) uint32 {
		for i, k := range envelopeFields {
			if k == field {
				return uint32(i+1) << 12
			}
		}
		panic(field)
	}
	return []fuzzcorpus.Seed{
		seed("valid", entry, asString, nil),
		seed("valid-other-entry-id", "1-1", asString, nil),
		seed("empty-entry", "", asString|0xFFF, nil),
		seed("no-event-id", entry, asString|bit("event_id"), nil),
		seed("no-stream-type", entry, asString|bit("stream_type"), nil),
		seed("no-metadata", entry, asString|bit("metadata"), nil),
		seed("no-data", entry, asString|bit("data"), nil),
		seed("version-as-bytes", entry, nonString("version"), nil),
		seed("stream-type-as-bytes", entry, nonString("stream_type"), nil),
		seed("id-with-newline", "7001-42\nentry 1-1:", asString|bit("type"), nil),
		one("event-id-not-uuid", "event_id", "not-a-uuid"),
		one("event-id-braces", "event_id", "{0195a3c2-7d4e-7000-8000-0000000000aa}"),
		one("event-id-urn", "event_id", "urn:uuid:0195a3c2-7d4e-7000-8000-0000000000aa"),
		one("stream-id-no-dashes", "stream_id", "0195a3c27d4e70008000000000000001"),
		one("stream-id-uppercase", "stream_id", "0195A3C2-7D4E-7000-8000-000000000001"),
		one("version-above-int64", "version", "9223372036854775808"),
		one("version-negative", "version", "-1"),
		one("version-plus-sign", "version", "+3"),
		one("version-leading-zeros", "version", "0003"),
		one("version-fraction", "version", "3.0"),
		one("schema-version-huge", "schema_version", "99999999999999999999"),
		one("global-position-hex", "global_position", "0x2a"),
		one("transaction-id-negative", "transaction_id", "-7001"),
		seed("transaction-id-max", "18446744073709551615-42", asString, map[string]string{"transaction_id": "18446744073709551615"}),
		one("position-not-the-entry-id", "global_position", "43"),
		one("occurred-at-offset", "occurred_at", "2026-01-31T11:00:00+01:00"),
		one("occurred-at-24h-offset", "occurred_at", "2026-01-31T10:00:00+24:00"),
		one("occurred-at-comma-fraction", "occurred_at", "2026-01-31T10:00:00,5Z"),
		one("occurred-at-ten-digit-fraction", "occurred_at", "2026-01-31T10:00:00.1234567891Z"),
		one("occurred-at-year-0", "occurred_at", "0000-01-01T00:00:00Z"),
		one("recorded-at-year-9999-west", "recorded_at", "9999-12-31T23:59:59-23:59"),
		one("recorded-at-not-rfc3339", "recorded_at", "Sat, 31 Jan 2026 10:00:00 GMT"),
		one("metadata-null", "metadata", "null"),
		one("metadata-array", "metadata", "[]"),
		one("metadata-wrong-type", "metadata", `{"actor":5}`),
		one("metadata-unknown-field", "metadata", `{"tenant":"t1"}`),
		one("metadata-key-in-other-case", "metadata", `{"ACTOR":"x"}`),
		one("metadata-duplicate-key", "metadata", `{"actor":"a","actor":"b"}`),
		one("metadata-invalid-utf8", "metadata", "{\"actor\":\"\xff\"}"),
		one("metadata-trailing-garbage", "metadata", `{} {}`),
		one("data-not-json", "data", "not json"),
		one("data-nul", "data", "\x00"),
		one("type-empty", "type", ""),
		one("type-injection", "type", "x'); DROP TABLE events;--"),
	}
}
