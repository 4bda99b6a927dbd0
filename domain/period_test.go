package domain

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestAddInterval(t *testing.T) {
	tests := []struct {
		anchor time.Time
		iv     Interval
		n      int
		want   time.Time
	}{
		{date(2025, 1, 31), IntervalMonth, 0, date(2025, 1, 31)},
		{date(2025, 1, 31), IntervalMonth, 1, date(2025, 2, 28)},
		{date(2025, 1, 31), IntervalMonth, 2, date(2025, 3, 31)},
		{date(2025, 1, 31), IntervalMonth, 3, date(2025, 4, 30)},
		{date(2025, 1, 31), IntervalMonth, 4, date(2025, 5, 31)},
		{date(2025, 1, 31), IntervalMonth, 12, date(2026, 1, 31)},
		{date(2025, 1, 31), IntervalMonth, 13, date(2026, 2, 28)},
		{date(2025, 1, 31), IntervalMonth, 37, date(2028, 2, 29)},
		{date(2024, 1, 31), IntervalMonth, 1, date(2024, 2, 29)},
		{date(2024, 1, 31), IntervalMonth, 2, date(2024, 3, 31)},
		{date(2025, 1, 30), IntervalMonth, 1, date(2025, 2, 28)},
		{date(2025, 1, 30), IntervalMonth, 2, date(2025, 3, 30)},
		{date(2024, 1, 30), IntervalMonth, 1, date(2024, 2, 29)},
		{date(2025, 1, 29), IntervalMonth, 1, date(2025, 2, 28)},
		{date(2024, 1, 29), IntervalMonth, 1, date(2024, 2, 29)},
		{date(2025, 1, 28), IntervalMonth, 1, date(2025, 2, 28)},
		{date(2024, 2, 29), IntervalMonth, 1, date(2024, 3, 29)},
		{date(2024, 2, 29), IntervalMonth, 12, date(2025, 2, 28)},
		{date(2024, 2, 29), IntervalMonth, 48, date(2028, 2, 29)},
		{date(2025, 3, 31), IntervalMonth, 1, date(2025, 4, 30)},
		{date(2025, 3, 31), IntervalMonth, 2, date(2025, 5, 31)},
		{date(2025, 5, 31), IntervalMonth, 1, date(2025, 6, 30)},
		{date(2025, 8, 31), IntervalMonth, 1, date(2025, 9, 30)},
		{date(2025, 12, 31), IntervalMonth, 1, date(2026, 1, 31)},
		{date(2025, 12, 31), IntervalMonth, 2, date(2026, 2, 28)},
		{date(2025, 12, 31), IntervalMonth, 14, date(2027, 2, 28)},
		{date(2025, 12, 31), IntervalMonth, 26, date(2028, 2, 29)},
		{date(2025, 12, 15), IntervalMonth, 1, date(2026, 1, 15)},
		{date(2025, 11, 30), IntervalMonth, 3, date(2026, 2, 28)},
		{date(2024, 2, 29), IntervalYear, 1, date(2025, 2, 28)},
		{date(2024, 2, 29), IntervalYear, 2, date(2026, 2, 28)},
		{date(2024, 2, 29), IntervalYear, 3, date(2027, 2, 28)},
		{date(2024, 2, 29), IntervalYear, 4, date(2028, 2, 29)},
		{date(2024, 2, 29), IntervalYear, 100, date(2124, 2, 29)},
		{date(2096, 2, 29), IntervalYear, 4, date(2100, 2, 28)}, // 2100 is not a leap year
		{date(2025, 12, 31), IntervalYear, 1, date(2026, 12, 31)},
		{date(2025, 1, 31), IntervalYear, 1, date(2026, 1, 31)},
		{date(2025, 8, 31), IntervalYear, 3, date(2028, 8, 31)},
		{
			time.Date(2025, 1, 31, 23, 59, 59, 0, time.UTC), IntervalMonth, 1,
			time.Date(2025, 2, 28, 23, 59, 59, 0, time.UTC),
		},
		{
			time.Date(2025, 1, 31, 13, 45, 7, 0, time.FixedZone("UTC+5", 5*3600)), IntervalMonth, 1,
			time.Date(2025, 2, 28, 13, 45, 7, 0, time.FixedZone("UTC+5", 5*3600)),
		},
	}
	for _, tt := range tests {
		got := AddInterval(tt.anchor, tt.iv, tt.n)
		if !got.Equal(tt.want) || got.Location().String() != tt.want.Location().String() {
			t.Errorf("AddInterval(%s, %s, %d) = %s, want %s", tt.anchor, tt.iv, tt.n, got, tt.want)
		}
	}
}

// TestAddIntervalProperty: the n-th boundary is n intervals of calendar months
// from the anchor, on the anchor's day clamped to the month, at its clock time.
func TestAddIntervalProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		anchor := time.Unix(rapid.Int64Range(0, 4_102_444_800).Draw(t, "anchor"), 0).UTC()
		iv := rapid.SampledFrom([]Interval{IntervalMonth, IntervalYear}).Draw(t, "interval")
		n := rapid.IntRange(0, 600).Draw(t, "n")
		got := AddInterval(anchor, iv, n)

		months := anchor.Year()*12 + int(anchor.Month()) - 1 + n*iv.months()
		wantY, wantM := months/12, time.Month(months%12+1)
		last := date(wantY, wantM+1, 0).Day()
		if got.Year() != wantY || got.Month() != wantM || got.Day() != min(anchor.Day(), last) {
			t.Fatalf("AddInterval(%s, %s, %d) = %s, want day min(%d, %d) of %d-%02d", anchor, iv, n, got, anchor.Day(), last, wantY, wantM)
		}
		if got.Sub(got.Truncate(24*time.Hour)) != anchor.Sub(anchor.Truncate(24*time.Hour)) {
			t.Fatalf("AddInterval(%s, %s, %d) = %s, want the anchor's time of day", anchor, iv, n, got)
		}
	})
}
