package main

import (
	"testing"
	"time"
)

// TestParseRebuilt reads billingctl's summary lines, skipping its progress lines.
func TestParseRebuilt(t *testing.T) {
	log := `rebuilding subscriptions…
  subscriptions: 3000 events in 5.618s
rebuilt subscriptions: 1000000 events over 276986 streams in 16.795s (59542 events/s); swapped in after catching up 0 events, blocking the live projector for 12ms
rebuilding invoices…
rebuilt invoices: 1000000 events over 276986 streams in 1m51.655s (8956 events/s); swapped in after catching up 0 events, blocking the live projector for 9ms
`
	got := parseRebuilt(log)
	want := []projectorResult{
		{name: "subscriptions", events: 1_000_000, streams: 276_986, duration: 16795 * time.Millisecond},
		{name: "invoices", events: 1_000_000, streams: 276_986, duration: time.Minute + 51655*time.Millisecond},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d projectors %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("projector %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
