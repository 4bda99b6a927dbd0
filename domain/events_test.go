package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"testing"
)

func TestEventTypes(t *testing.T) {
	want := []string{
		"customer.credit_granted",
		"customer.invoice_issued",
		"invoice.created",
		"invoice.marked_uncollectible",
		"invoice.payment_failed",
		"invoice.payment_succeeded",
		"invoice.refunded",
		"invoice.voided",
		"subscription.canceled",
		"subscription.cancellation_scheduled",
		"subscription.cancellation_undone",
		"subscription.created",
		"subscription.marked_unpaid",
		"subscription.past_due",
		"subscription.paused",
		"subscription.payment_method_changed",
		"subscription.payment_recovered",
		"subscription.plan_change_scheduled",
		"subscription.plan_changed",
		"subscription.renewed",
		"subscription.resumed",
		"subscription.seats_changed",
		"subscription.trial_will_end",
		"subscription.upgrade_failed",
		"upgrade.aborted",
		"upgrade.charged",
		"upgrade.compensating",
		"upgrade.completed",
		"upgrade.invoiced",
		"upgrade.plan_applied",
		"upgrade.started",
	}
	if got := EventTypes(); !slices.Equal(got, want) {
		t.Errorf("EventTypes() = %v, want %v", got, want)
	}
	for _, typ := range EventTypes() {
		e, err := DecodeEvent(typ, []byte(`{}`))
		if err != nil || e.EventType() != typ {
			t.Errorf("DecodeEvent(%q, {}) = %#v, %v, want an event of that type", typ, e, err)
		}
	}
}

// TestEvolveHandlesEveryEventType checks that the evolve function of each event's aggregate (the
// type's prefix) has a case for it, and that no other aggregate's does.
func TestEvolveHandlesEveryEventType(t *testing.T) {
	versions := map[string]func(Event) int64{
		"subscription": func(e Event) int64 { return Evolve(Subscription{}, e).Version },
		"invoice":      func(e Event) int64 { return EvolveInvoice(Invoice{}, e).Version },
		"customer":     func(e Event) int64 { return EvolveCustomer(Customer{}, e).Version },
		"upgrade":      func(e Event) int64 { return EvolveUpgrade(Upgrade{}, e).Version },
	}
	for _, typ := range EventTypes() {
		e, _ := DecodeEvent(typ, []byte(`{}`))
		if e.EventType() != typ {
			t.Fatalf("DecodeEvent(%q) gave a %s", typ, e.EventType())
		}
		if _, ok := versions[StreamTypeOf(typ)]; !ok {
			t.Errorf("%s: no aggregate %q", typ, StreamTypeOf(typ))
		}
		for aggregate, version := range versions {
			want := int64(0)
			if aggregate == StreamTypeOf(typ) {
				want = 1
			}
			if got := version(e); got != want {
				t.Errorf("evolving a zero %s with %s: got version %d, want %d", aggregate, typ, got, want)
			}
		}
	}
}

func TestEvolveIgnoresValuesOfOtherTypes(t *testing.T) {
	s := Subscription{ID: "sub_1", Status: StatusActive, Version: 3}
	for _, e := range []Event{nil, &Paused{}} {
		if got := Evolve(s, e); !reflect.DeepEqual(got, s) {
			t.Errorf("Evolve(s, %#v) = %+v, want s unchanged", e, got)
		}
	}
}

func TestDecodeEventErrors(t *testing.T) {
	tests := []struct {
		typ, data string
		unknown   bool
	}{
		{"subscription.exploded", `{}`, true},
		{"", `{}`, true},
		{"subscription.paused", `{"paused_at":"2026-04-01T00:00:00Z","by":"admin"}`, false},
		{"subscription.paused", `{"paused_at":"yesterday"}`, false},
		{"subscription.paused", `{} {}`, false},
		{"subscription.paused", `{}]`, false},
		{"subscription.paused", ``, false},
		{"subscription.seats_changed", `{"seats":"3"}`, false},
	}
	for _, tt := range tests {
		e, err := DecodeEvent(tt.typ, []byte(tt.data))
		var ue *UnknownEventTypeError
		if err == nil || e != nil || errors.As(err, &ue) != tt.unknown {
			t.Errorf("DecodeEvent(%q, %s) = %v, %v, want an error (unknown type: %t)", tt.typ, tt.data, e, err, tt.unknown)
		}
	}
}

// The JSON shape is the stored record; every key of every event, at any
// depth, is snake_case.
func TestEventJSONKeysAreSnakeCase(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !snake.MatchString(k) {
					t.Errorf("%s: key %q is not snake_case", path, k)
				}
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		}
	}
	values := []any{ProrationLine{}, ScheduledChange{}}
	for _, typ := range EventTypes() {
		e, _ := DecodeEvent(typ, []byte(`{}`))
		values = append(values, e)
	}
	for _, x := range values {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		walk(fmt.Sprintf("%T", x), v)
	}
}
