package domain

import "math/big"

// mulDivHalfEven returns a×b×c÷d rounded half to even, for d > 0. The product
// goes through big.Int because amount×seats×seconds overflows int64 long
// before the quotient does.
func mulDivHalfEven(a, b, c, d int64) int64 {
	num := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	num.Mul(num, big.NewInt(c))
	den := big.NewInt(d)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	// q is truncated toward zero; step away from zero when the remainder is
	// more than half, or exactly half and q is odd.
	switch r.Abs(r).Lsh(r, 1).Cmp(den) {
	case 1:
		q.Add(q, big.NewInt(int64(num.Sign())))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(int64(num.Sign())))
		}
	}
	if !q.IsInt64() {
		// Unreachable within MaxUnitAmount and MaxSeats; a silently wrapped
		// amount would be worse than a crash.
		panic("domain: amount overflows int64")
	}
	return q.Int64()
}
