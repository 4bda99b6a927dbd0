package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
)

// FuzzDecodeEvent feeds arbitrary bytes to DecodeEvent as the data of every event type. Stored
// events come back through it, so besides never panicking it must be a faithful codec: whatever
// it accepts re-encodes, and decodes again to the same event, with the same bytes; whatever it
// refuses is an error and no event.
func FuzzDecodeEvent(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzDecodeEvent", decodeEventSeeds(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := domain.DecodeEvent("subscription.teleported", data)
		var unknown *domain.UnknownEventTypeError
		if e != nil || !errors.As(err, &unknown) {
			t.Errorf("DecodeEvent(unknown type) = %#v, %v; want no event and *UnknownEventTypeError", e, err)
		}
		for _, typ := range domain.EventTypes() {
			checkDecodeRoundTrip(t, typ, data)
		}
	})
}

func checkDecodeRoundTrip(t *testing.T, typ string, data []byte) {
	t.Helper()
	e, err := domain.DecodeEvent(typ, data)
	if err != nil {
		var unknown *domain.UnknownEventTypeError
		if e != nil || errors.As(err, &unknown) {
			t.Errorf("DecodeEvent(%s, %q) = %#v, %v; an error must come with no event, and the type is known", typ, data, e, err)
		}
		return
	}
	if e == nil || e.EventType() != typ {
		t.Fatalf("DecodeEvent(%s, %q) = %#v without error; want an event of that type", typ, data, e)
	}
	encoded, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("DecodeEvent(%s, %q) accepted an event that does not encode: %v", typ, data, err)
	}
	again, err := domain.DecodeEvent(typ, encoded)
	if err != nil {
		t.Fatalf("%s: DecodeEvent(%q) = %v; its own encoding %s must decode", typ, data, err, encoded)
	}
	if !sameValue(reflect.ValueOf(e), reflect.ValueOf(again)) {
		t.Errorf("%s: %q decodes to %#v, but its encoding %s decodes to %#v", typ, data, e, encoded, again)
	}
	if path := droppedKey(data, encoded); path != "" {
		t.Errorf("%s: %q decodes without error, but its key %s is lost in %s", typ, data, path, encoded)
	}
	reencoded, err := json.Marshal(again)
	if err != nil || !bytes.Equal(encoded, reencoded) {
		t.Errorf("%s: encoding is not stable: %s, then %s (%v)", typ, encoded, reencoded, err)
	}
	// Evolve takes any decoded event without failing (a panic fails the input): an event is a
	// fact that already happened.
	domain.Evolve(domain.Subscription{Version: 4}, e)
}

// droppedKey returns the path of a key of the JSON object in (at any depth, null values aside)
// that out has no counterpart for, matching names as encoding/json does (ignoring case), or "".
// A decoder that accepts a key only to drop it would lose stored data without a word.
func droppedKey(in, out []byte) string {
	var a, b any
	if json.Unmarshal(in, &a) != nil || json.Unmarshal(out, &b) != nil {
		return ""
	}
	var walk func(path string, a, b any) string
	walk = func(path string, a, b any) string {
		switch a := a.(type) {
		case map[string]any:
			bm, _ := b.(map[string]any)
			for k, av := range a {
				if av == nil {
					continue
				}
				found := false
				for bk, bv := range bm {
					if strings.EqualFold(k, bk) {
						found = true
						if p := walk(path+"/"+k, av, bv); p != "" {
							return p
						}
					}
				}
				if !found {
					return path + "/" + k
				}
			}
		case []any:
			if bs, ok := b.([]any); ok && len(bs) == len(a) {
				for i := range a {
					if p := walk(fmt.Sprintf("%s/%d", path, i), a[i], bs[i]); p != "" {
						return p
					}
				}
			}
		}
		return ""
	}
	return walk("", a, b)
}

// sameValue is reflect.DeepEqual except that times are compared as instants: a time decoded
// from "+00:00" carries another *time.Location than one decoded from "Z", yet they are the
// same time and encode the same way (the encoding is compared byte for byte separately).
func sameValue(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == reflect.TypeFor[time.Time]() {
		return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
	}
	switch a.Kind() {
	case reflect.Interface, reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	}
	panic("sameValue: unexpected kind " + a.Kind().String())
}

// decodeEventSeeds: the encoding of every event type as Decide writes it, and the malformed
// shapes a store or a hand-written migration could hold.
func decodeEventSeeds(tb testing.TB) []fuzzcorpus.Seed {
	tb.Helper()
	var seeds []fuzzcorpus.Seed
	for i, e := range sampleHistory(tb) {
		data, err := json.Marshal(e)
		if err != nil {
			tb.Fatal(err)
		}
		name := fmt.Sprintf("valid-%02d-%s", i+1, strings.ReplaceAll(strings.TrimPrefix(e.EventType(), "subscription."), "_", "-"))
		seeds = append(seeds, fuzzcorpus.S(name, data))
	}
	raw := map[string]string{
		"empty":                    ``,
		"empty-object":             `{}`,
		"null":                     `null`,
		"array":                    `[]`,
		"string":                   `"subscription.created"`,
		"two-objects":              `{} {}`,
		"trailing-garbage":         `{"seats": 3} x`,
		"truncated":                `{"seats": 3`,
		"unknown-field":            `{"seats": 3, "discount": 10}`,
		"field-in-other-case":      `{"SEATS": 3, "Paused_At": "2026-04-01T00:00:00Z"}`,
		"duplicate-key":            `{"seats": 3, "seats": 4}`,
		"seats-as-string":          `{"seats": "3"}`,
		"seats-fractional":         `{"seats": 1.5}`,
		"seats-1e400":              `{"seats": 1e400}`,
		"seats-above-int64":        `{"seats": 9223372036854775808}`,
		"seats-below-int64":        `{"from_seats": -9223372036854775809}`,
		"time-with-offset":         `{"paused_at": "2026-04-01T02:00:00+02:00", "resumed_at": "2026-04-01T02:00:00+02:00"}`,
		"time-plus-zero-offset":    `{"canceled_at": "2026-04-01T00:00:00+00:00", "reason": "requested"}`,
		"time-nanoseconds":         `{"undone_at": "2026-04-01T00:00:00.123456789Z"}`,
		"time-year-0":              `{"requested_at": "0000-01-01T00:00:00Z", "cancel_at": "0000-01-01T00:00:00+23:59"}`,
		"time-year-9999-west":      `{"paused_at": "9999-12-31T23:59:59-23:59"}`,
		"time-not-rfc3339":         `{"paused_at": "2026-04-01 00:00:00"}`,
		"time-as-number":           `{"paused_at": 1775001600}`,
		"trial-end-null":           `{"trial_end": null, "status": "trialing"}`,
		"unknown-enum":             `{"status": "expired", "direction": "sideways", "plan": {"interval": "week"}}`,
		"nul-and-invalid-utf8":     "{\"reason\": \"a\\u0000b\xff\xfe\"}",
		"sql-injection":            `{"customer_id": "x'); DROP TABLE events;--", "subscription_id": "\" OR 1=1"}`,
		"proration-wrong-shape":    `{"proration": {"amount": 1}}`,
		"proration-null-elements":  `{"proration": [null, {}]}`,
		"features-wrong-type":      `{"plan": {"features": "sso"}}`,
		"deep-nesting":             `{"plan": ` + strings.Repeat(`{"plan": `, 500) + `{}` + strings.Repeat(`}`, 501),
		"deep-array":               `{"proration": ` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}`,
		"bom-prefix":               "\xef\xbb\xbf{}",
		"escaped-key":              `{"s\u0065ats": 3}`,
		"negative-zero-and-exp":    `{"seats": -0, "from_seats": 1e2}`,
		"whitespace-only":          " \t\r\n",
		"very-long-string":         `{"reason": "` + strings.Repeat("x", 1<<16) + `"}`,
		"plan-terms-unknown-field": `{"plan": {"plan_id": "pro", "price": 1}}`,
	}
	for name, data := range raw {
		seeds = append(seeds, fuzzcorpus.S(name, []byte(data)))
	}
	return seeds
}

// sampleHistory is one subscription's history with every event type, as Decide writes it.
func sampleHistory(tb testing.TB) []domain.Event {
	tb.Helper()
	catalog := domain.DefaultCatalog()
	plan := func(id string) domain.Plan {
		p, err := catalog.Plan(id)
		if err != nil {
			tb.Fatal(err)
		}
		return p
	}
	trial := 14
	at := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	steps := []domain.Command{
		domain.Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: plan("pro_monthly"), Seats: 2, TrialDays: &trial},
		domain.ChangePlan{Plan: plan("business_monthly")}, // immediate during the trial
		domain.Cancel{},
	}
	var history []domain.Event
	var s domain.Subscription
	run := func(c domain.Command) {
		events, err := domain.Decide(s, c, at)
		if err != nil {
			tb.Fatalf("sample history: %T: %v", c, err)
		}
		for _, e := range events {
			s = domain.Evolve(s, e)
		}
		history = append(history, events...)
		at = at.Add(36 * time.Hour)
	}
	run(steps[0])
	run(steps[1])
	// A second, paid subscription for the events a trial does not have.
	s = domain.Subscription{}
	noTrial := 0
	for _, c := range []domain.Command{
		domain.Create{SubscriptionID: "sub_2", CustomerID: "cus_1", Plan: plan("pro_monthly"), Seats: 2, TrialDays: &noTrial},
		domain.ChangePlan{Plan: plan("business_monthly"), Seats: 3},
		domain.ChangeSeats{Seats: 5},
		domain.ChangePlan{Plan: plan("starter_monthly")}, // a downgrade waits for the period end
		domain.Cancel{AtPeriodEnd: true},
		domain.UndoCancel{},
		domain.Pause{},
		domain.Resume{},
		steps[2],
	} {
		run(c)
	}
	return history
}
