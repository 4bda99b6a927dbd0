package domain

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var zones = []*time.Location{time.UTC, time.FixedZone("UTC+5:30", 5*3600+1800), time.FixedZone("UTC-8", -8*3600)}

func drawPlan(t *rapid.T) Plan {
	return rapid.OneOf(
		rapid.SampledFrom(DefaultCatalog().Plans()),
		rapid.Custom(func(t *rapid.T) Plan {
			p := testPlan(
				rapid.StringMatching(`[a-z][a-z0-9_]{0,8}`).Draw(t, "id"),
				rapid.SampledFrom([]Interval{IntervalMonth, IntervalYear}).Draw(t, "interval"),
				rapid.Int64Range(0, MaxUnitAmount).Draw(t, "unit_amount"),
			)
			p.TrialDays = rapid.IntRange(0, 3).Draw(t, "trial_days")
			return p
		}),
	).Draw(t, "plan")
}

func drawSeats(t *rapid.T, label string) int64 {
	if rapid.IntRange(0, 9).Draw(t, label+" extreme") == 0 {
		return rapid.SampledFrom([]int64{-1, 0, MaxSeats, MaxSeats + 1}).Draw(t, label)
	}
	return rapid.Int64Range(1, 50).Draw(t, label)
}

func drawCommand(t *rapid.T, s Subscription) Command {
	if !s.Exists() && rapid.IntRange(0, 9).Draw(t, "create first") > 0 {
		var trial *int
		if rapid.Bool().Draw(t, "explicit trial") {
			trial = new(rapid.IntRange(-1, 20).Draw(t, "trial days"))
		}
		return Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: drawPlan(t), Seats: drawSeats(t, "seats"), TrialDays: trial}
	}
	switch rapid.IntRange(0, 6).Draw(t, "command") {
	case 0:
		return Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: drawPlan(t), Seats: 1}
	case 1:
		timing := rapid.SampledFrom([]Timing{TimingDefault, TimingImmediate, TimingPeriodEnd, "bogus"}).Draw(t, "timing")
		return ChangePlan{Plan: drawPlan(t), Seats: rapid.OneOf(rapid.Just(int64(0)), rapid.Int64Range(-1, 50)).Draw(t, "seats"), Timing: timing}
	case 2:
		return ChangeSeats{Seats: drawSeats(t, "seats")}
	case 3:
		// Cancelling now ends the history, so make it the rarer kind.
		return Cancel{AtPeriodEnd: rapid.IntRange(0, 3).Draw(t, "cancel kind") > 0}
	case 4:
		return UndoCancel{}
	case 5:
		return Pause{}
	default:
		return Resume{}
	}
}

// TestReplay checks, for random command histories, that the state built step
// by step equals a replay of all events from zero, that Version counts the
// events, and that every event survives the store's JSON codec unchanged.
func TestReplay(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		start := time.Unix(rapid.Int64Range(1_700_000_000, 2_000_000_000).Draw(t, "start"), 0)
		now := start.Add(time.Duration(rapid.Int64Range(0, 999_999_999).Draw(t, "nanos")))
		var s Subscription
		var history []Event
		for range rapid.IntRange(1, 40).Draw(t, "steps") {
			step := rapid.OneOf(
				rapid.Int64Range(0, 3600),
				rapid.Int64Range(0, 10*86400),
			).Draw(t, "step seconds")
			now = now.Add(time.Duration(step) * time.Second)
			events, err := Decide(s, drawCommand(t, s), now.In(rapid.SampledFrom(zones).Draw(t, "zone")))
			if err != nil {
				if events != nil {
					t.Fatalf("Decide returned events %v with error %v", events, err)
				}
				continue
			}
			for _, e := range events {
				if at := e.OccurredAt(); at.Location() != time.UTC || at.Nanosecond() != 0 || at.Before(s.UpdatedAt) {
					t.Fatalf("%s occurred at %s, want UTC whole seconds not before %s", e.EventType(), at, s.UpdatedAt)
				}
				data, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				decoded, err := DecodeEvent(e.EventType(), data)
				if err != nil || !reflect.DeepEqual(decoded, e) {
					t.Fatalf("round trip of %s:\n got %#v, %v\nwant %#v", data, decoded, err, e)
				}
				s = Evolve(s, decoded)
				history = append(history, e)
				if s.UpdatedAt != e.OccurredAt() {
					t.Fatalf("after %s: UpdatedAt %s, want %s", e.EventType(), s.UpdatedAt, e.OccurredAt())
				}
			}
			if s.MRR() < 0 || s.Seats < 1 || s.Seats > MaxSeats || !s.PeriodStart.Before(s.PeriodEnd) {
				t.Fatalf("invariant broken: %+v", s)
			}
		}
		if s.Version != int64(len(history)) {
			t.Fatalf("Version = %d, want %d events", s.Version, len(history))
		}
		if replayed := Fold(history); !reflect.DeepEqual(replayed, s) {
			t.Fatalf("Fold(history) =\n%+v\nwant the step-by-step state\n%+v", replayed, s)
		}
	})
}
