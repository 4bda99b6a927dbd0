package domain

import (
	"math/big"
	"testing"

	"pgregory.net/rapid"
)

func TestMulDivHalfEven(t *testing.T) {
	tests := []struct {
		name       string
		a, b, c, d int64
		want       int64
	}{
		{"0.5 to even 0", 1, 1, 1, 2, 0},
		{"1.5 to even 2", 3, 1, 1, 2, 2},
		{"2.5 to even 2", 5, 1, 1, 2, 2},
		{"3.5 to even 4", 7, 1, 1, 2, 4},
		{"-0.5 to even 0", -1, 1, 1, 2, 0},
		{"-1.5 to even -2", -3, 1, 1, 2, -2},
		{"-2.5 to even -2", -5, 1, 1, 2, -2},
		{"0.4 down", 2, 1, 1, 5, 0},
		{"0.6 up", 3, 1, 1, 5, 1},
		{"-0.6 away from zero", -3, 1, 1, 5, -1},
		{"2.501 up", 2501, 1, 1, 1000, 3},
		{"exact", 6, 1, 1, 3, 2},
		{"zero", 0, MaxSeats, 5, 7, 0},
		{"max amount × max seats × a leap year", MaxUnitAmount, MaxSeats, 31_622_400, 31_622_400, 100_000_000_000_000_000},
		{"max amount × max seats ÷ 3", MaxUnitAmount, MaxSeats, 1, 3, 33_333_333_333_333_333},
		{"max amount × max seats ÷ 12", MaxUnitAmount, MaxSeats, 1, 12, 8_333_333_333_333_333},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mulDivHalfEven(tt.a, tt.b, tt.c, tt.d); got != tt.want {
				t.Errorf("mulDivHalfEven(%d, %d, %d, %d) = %d, want %d", tt.a, tt.b, tt.c, tt.d, got, tt.want)
			}
		})
	}
}

// TestMulDivHalfEvenProperty checks the definition rather than examples: the
// result r is within half a unit of a×b×c÷d, and an exact tie picks even r.
func TestMulDivHalfEvenProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := rapid.Int64Range(-MaxUnitAmount, MaxUnitAmount).Draw(t, "a")
		b := rapid.Int64Range(0, MaxSeats).Draw(t, "b")
		d := rapid.Int64Range(1, 40_000_000).Draw(t, "d")
		c := rapid.Int64Range(0, d).Draw(t, "c")
		r := mulDivHalfEven(a, b, c, d)

		num := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
		num.Mul(num, big.NewInt(c))
		// twice the error, |2(num − r·d)|, against d
		diff := new(big.Int).Sub(num, new(big.Int).Mul(big.NewInt(r), big.NewInt(d)))
		twice := diff.Abs(diff).Lsh(diff, 1)
		switch twice.Cmp(big.NewInt(d)) {
		case 1:
			t.Fatalf("got %d, more than half a unit from %s/%d", r, num, d)
		case 0:
			if r%2 != 0 {
				t.Fatalf("got %d for the tie %s/%d, want the even neighbour", r, num, d)
			}
		}
	})
}
