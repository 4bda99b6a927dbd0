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
		"subscription.canceled",
		"subscription.cancellation_scheduled",
		"subscription.cancellation_undone",
		"subscription.created",
		"subscription.paused",
		"subscription.plan_change_scheduled",
		"subscription.plan_changed",
		"subscription.resumed",
		"subscription.seats_changed",
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

func TestEvolveHandlesEveryEventType(t *testing.T) {
	for _, typ := range EventTypes() {
		e, _ := DecodeEvent(typ, []byte(`{}`))
		if got := Evolve(Subscription{}, e); got.Version != 1 {
			t.Errorf("Evolve(zero, %s): got Version %d, want 1: Evolve has no case for it", typ, got.Version)
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
		{"subscription.renewed", `{}`, true},
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
