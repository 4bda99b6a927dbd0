package domain

import (
	"testing"
	"time"
)

func TestProrate(t *testing.T) {
	at := func(y int, m time.Month, d, hh, mm, ss int) time.Time {
		return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
	}
	monthly := func(anchor time.Time) (time.Time, time.Time) { return anchor, AddInterval(anchor, IntervalMonth, 1) }
	apr, aprEnd := monthly(date(2026, 4, 1))                                              // 30 days
	feb24, feb24End := monthly(date(2024, 2, 1))                                          // 29 days
	jan31, jan31End := monthly(date(2025, 1, 31))                                         // to Feb 28: 28 days
	leapY, leapYEnd := date(2024, 2, 29), AddInterval(date(2024, 2, 29), IntervalYear, 1) // to Feb 28 2025: 365 days
	y24, y24End := date(2024, 1, 1), date(2025, 1, 1)                                     // 366 days

	tests := []struct {
		name           string
		unit, seats    int64
		at, start, end time.Time
		want           int64
	}{
		{"halfway through 30 days, old 1000", 1000, 1, at(2026, 4, 16, 0, 0, 0), apr, aprEnd, 500},
		{"halfway through 30 days, new 2000", 2000, 1, at(2026, 4, 16, 0, 0, 0), apr, aprEnd, 1000},
		{"first second is the whole period", 4900, 3, apr, apr, aprEnd, 14700},
		{"last second", 4900, 3, aprEnd.Add(-time.Second), apr, aprEnd, 0},
		{"last second, max amount and seats", MaxUnitAmount, MaxSeats, aprEnd.Add(-time.Second), apr, aprEnd, 38_580_246_914},
		{"leap February, 15 of 29 days", 2900, 1, date(2024, 2, 15), feb24, feb24End, 1500},
		{"Jan 31 anchor, 14 of 28 days", 1000, 1, date(2025, 2, 14), jan31, jan31End, 500},
		{"Feb 29 yearly anchor, 100 of 365 days", 36500, 1, date(2024, 11, 20), leapY, leapYEnd, 10000},
		{"leap year, halfway", 1000, 2, date(2024, 7, 2), y24, y24End, 1000},
		{"max amount × max seats × a leap year, whole", MaxUnitAmount, MaxSeats, y24, y24, y24End, 100_000_000_000_000_000},
		{"max amount × max seats × a leap year, half", MaxUnitAmount, MaxSeats, date(2024, 7, 2), y24, y24End, 50_000_000_000_000_000},
		{"tie 0.5 to 0", 1, 1, at(2026, 1, 1, 0, 0, 1), at(2026, 1, 1, 0, 0, 0), at(2026, 1, 1, 0, 0, 2), 0},
		{"tie 1.5 to 2", 3, 1, at(2026, 1, 1, 0, 0, 1), at(2026, 1, 1, 0, 0, 0), at(2026, 1, 1, 0, 0, 2), 2},
		{"tie 2.5 to 2", 5, 1, at(2026, 1, 1, 0, 0, 1), at(2026, 1, 1, 0, 0, 0), at(2026, 1, 1, 0, 0, 2), 2},
		{"7.5 to 8 over seats", 5, 3, at(2026, 1, 1, 0, 0, 1), at(2026, 1, 1, 0, 0, 0), at(2026, 1, 1, 0, 0, 2), 8},
		{"a third of 1000", 1000, 1, at(2026, 4, 21, 0, 0, 0), apr, aprEnd, 333},
		{"two thirds of 1000", 1000, 1, at(2026, 4, 11, 0, 0, 0), apr, aprEnd, 667},
		{"free plan", 0, 10, at(2026, 4, 11, 0, 0, 0), apr, aprEnd, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := prorate(tt.unit, tt.seats, tt.at, tt.start, tt.end); got != tt.want {
				t.Errorf("prorate(%d, %d, %s, [%s, %s)) = %d, want %d", tt.unit, tt.seats, tt.at, tt.start, tt.end, got, tt.want)
			}
		})
	}
}

func TestProrationLines(t *testing.T) {
	terms := PlanTerms{PlanID: "pro_monthly", Name: "Pro", Interval: IntervalMonth, UnitAmount: 5, Currency: "USD"}
	start, end := date(2026, 1, 1), date(2026, 1, 1).Add(2*time.Second)
	mid := start.Add(time.Second)

	credit := creditLine(terms, 1, mid, start, end)
	want := ProrationLine{
		Description: "Unused time on 1 × Pro", Amount: -2, Quantity: 1, UnitAmount: 5,
		PeriodStart: mid, PeriodEnd: end, Proration: true, PlanID: "pro_monthly",
	}
	if credit != want {
		t.Errorf("creditLine = %+v, want %+v (−2.5 rounds to −2)", credit, want)
	}
	charge := chargeLine(terms, 3, mid, start, end)
	want = ProrationLine{
		Description: "Remaining time on 3 × Pro", Amount: 8, Quantity: 3, UnitAmount: 5,
		PeriodStart: mid, PeriodEnd: end, Proration: true, PlanID: "pro_monthly",
	}
	if charge != want {
		t.Errorf("chargeLine = %+v, want %+v", charge, want)
	}
}
