package projections

import (
	"fmt"
	"math/big"
	"time"

	"github.com/google/uuid"
)

// MovementKind classifies a change of one subscription's MRR.
type MovementKind string

const (
	// MovementNew: MRR goes from 0 to more for the first time in the subscription's life.
	MovementNew MovementKind = "new"
	// MovementReactivation: MRR goes from 0 to more again, after the subscription had MRR before
	// (a resume after a pause).
	MovementReactivation MovementKind = "reactivation"
	// MovementExpansion: MRR goes up from more than 0 (more seats, an upgrade).
	MovementExpansion MovementKind = "expansion"
	// MovementContraction: MRR goes down and stays above 0 (fewer seats, a downgrade).
	MovementContraction MovementKind = "contraction"
	// MovementChurn: MRR goes from more than 0 to 0 (cancel, pause).
	MovementChurn MovementKind = "churn"
)

// MovementKinds lists every kind.
var MovementKinds = []MovementKind{MovementNew, MovementExpansion, MovementContraction, MovementChurn, MovementReactivation}

// ClassifyMovement names the change of a subscription's MRR from before to after (both >= 0, as
// domain.Subscription.MRR returns them); hadMRR says whether the subscription had MRR above 0 at
// any earlier point. It returns false when MRR did not change: that is not a movement.
func ClassifyMovement(before, after int64, hadMRR bool) (MovementKind, bool) {
	switch {
	case after == before:
		return "", false
	case before == 0 && hadMRR:
		return MovementReactivation, true
	case before == 0:
		return MovementNew, true
	case after == 0:
		return MovementChurn, true
	case after > before:
		return MovementExpansion, true
	default:
		return MovementContraction, true
	}
}

// Movement is one row of mrr_movements: an event that changed a subscription's MRR.
type Movement struct {
	EventID        uuid.UUID
	SubscriptionID uuid.UUID
	Version        int64 // the event's version in the subscription's stream
	CustomerID     string
	PlanID         string // the plan after the event
	Currency       string
	OccurredAt     time.Time
	Kind           MovementKind
	Amount         int64 // MRRAfter - MRRBefore: negative for contraction and churn
	MRRBefore      int64
	MRRAfter       int64
}

// Rate returns num/den as a decimal string with exactly 4 decimal places ("0.0525"), computed
// exactly and rounded half to even; nil when den is 0 (the rate is undefined). den must not be
// negative.
func Rate(num, den int64) *string {
	if den == 0 {
		return nil
	}
	if den < 0 {
		panic(fmt.Sprintf("projections: Rate with negative denominator %d", den))
	}
	q := divHalfEven(new(big.Int).Mul(big.NewInt(num), big.NewInt(10_000)), big.NewInt(den))
	sign := ""
	if q.Sign() < 0 {
		sign = "-"
		q.Neg(q)
	}
	whole, frac := new(big.Int).QuoRem(q, big.NewInt(10_000), new(big.Int))
	s := fmt.Sprintf("%s%s.%04d", sign, whole.String(), frac.Int64())
	return &s
}

// DivHalfEven returns num/den rounded half to even; den must be above 0.
func DivHalfEven(num, den int64) int64 {
	if den <= 0 {
		panic(fmt.Sprintf("projections: DivHalfEven with denominator %d", den))
	}
	return divHalfEven(big.NewInt(num), big.NewInt(den)).Int64()
}

// divHalfEven returns num/den rounded half to even, for den > 0.
func divHalfEven(num, den *big.Int) *big.Int {
	q, r := new(big.Int).QuoRem(num, den, new(big.Int)) // q truncated toward zero
	// Step away from zero when the remainder is more than half, or exactly half and q is odd.
	switch new(big.Int).Lsh(r.Abs(r), 1).Cmp(den) {
	case 1:
		q.Add(q, big.NewInt(int64(num.Sign())))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(int64(num.Sign())))
		}
	}
	return q
}
