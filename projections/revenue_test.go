package projections_test

import (
	"math"
	"testing"

	"github.com/billing-oss/billing/projections"
)

func TestClassifyMovement(t *testing.T) {
	tests := []struct {
		before, after int64
		hadMRR        bool
		want          projections.MovementKind // "" for no movement
	}{
		{0, 0, false, ""},
		{0, 0, true, ""},
		{4900, 4900, true, ""},
		{0, 4900, false, projections.MovementNew},
		{0, 4900, true, projections.MovementReactivation},
		{4900, 9800, true, projections.MovementExpansion},
		{9800, 4900, true, projections.MovementContraction},
		{9800, 1, true, projections.MovementContraction},
		{9800, 0, true, projections.MovementChurn},
	}
	for _, tt := range tests {
		kind, ok := projections.ClassifyMovement(tt.before, tt.after, tt.hadMRR)
		if kind != tt.want || ok != (tt.want != "") {
			t.Errorf("ClassifyMovement(%d, %d, %t) = %q, %t; want %q", tt.before, tt.after, tt.hadMRR, kind, ok, tt.want)
		}
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		num, den int64
		want     string // "null" for nil
	}{
		{1, 0, "null"},
		{0, 0, "null"},
		{0, 5, "0.0000"},
		{1, 8, "0.1250"},
		{1, 3, "0.3333"},
		{2, 3, "0.6667"},
		{5, 4, "1.2500"},
		{1, 20000, "0.0000"}, // 0.00005: half to even, down
		{3, 20000, "0.0002"}, // 0.00015: half to even, up
		{5, 20000, "0.0002"}, // 0.00025: half to even, down
		{7, 20000, "0.0004"}, // 0.00035: half to even, up
		{20001, 20000, "1.0000"},
		{20003, 20000, "1.0002"},
		{-1, 3, "-0.3333"},
		{-1, 20000, "0.0000"},
		{-3, 20000, "-0.0002"},
		{math.MaxInt64, 1, "9223372036854775807.0000"},
		{math.MaxInt64, math.MaxInt64, "1.0000"},
		{1, math.MaxInt64, "0.0000"},
	}
	for _, tt := range tests {
		got := "null"
		if r := projections.Rate(tt.num, tt.den); r != nil {
			got = *r
		}
		if got != tt.want {
			t.Errorf("Rate(%d, %d) = %s, want %s", tt.num, tt.den, got, tt.want)
		}
	}
}

func TestDivHalfEven(t *testing.T) {
	tests := []struct{ num, den, want int64 }{
		{0, 3, 0}, {1, 3, 0}, {2, 3, 1}, {5, 2, 2}, {7, 2, 4}, {9, 2, 4}, {-5, 2, -2}, {-7, 2, -4},
		{100, 7, 14}, {math.MaxInt64, 2, 1 << 62}, {math.MaxInt64, 1, math.MaxInt64},
	}
	for _, tt := range tests {
		if got := projections.DivHalfEven(tt.num, tt.den); got != tt.want {
			t.Errorf("DivHalfEven(%d, %d) = %d, want %d", tt.num, tt.den, got, tt.want)
		}
	}
}
