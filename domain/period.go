package domain

import "time"

// Interval is how often a plan bills.
type Interval string

const (
	IntervalMonth Interval = "month"
	IntervalYear  Interval = "year"
)

// Valid reports whether iv is a known interval.
func (iv Interval) Valid() bool { return iv == IntervalMonth || iv == IntervalYear }

// months is the interval's length in calendar months. Plans are validated on
// the way in, so an unknown interval here is a programming error.
func (iv Interval) months() int {
	switch iv {
	case IntervalMonth:
		return 1
	case IntervalYear:
		return 12
	}
	panic("domain: unknown interval " + string(iv))
}

// AddInterval returns the n-th period boundary after anchor, keeping its time
// of day. The day is clamped to the target month's length, and because every
// boundary is computed from the anchor (never from the previous boundary) it
// returns to the anchor's day: Jan 31 → Feb 28 → Mar 31, and a Feb 29 yearly
// anchor → Feb 28 → Feb 28 → Feb 28 → Feb 29. iv must be valid.
func AddInterval(anchor time.Time, iv Interval, n int) time.Time {
	y, m, d := anchor.Date()
	hh, mm, ss := anchor.Clock()
	m += time.Month(n * iv.months())
	// Day 0 of the following month is the last day of month m; time.Date
	// normalises the month overflow into the year.
	last := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
	return time.Date(y, m, min(d, last), hh, mm, ss, anchor.Nanosecond(), anchor.Location())
}
