package domain

import (
	"fmt"
	"time"
)

// prorate is unitAmount×seats for the part of [start, end) remaining at at,
// exact to the second and rounded half to even. Decide guarantees
// start <= at < end and whole-second times.
func prorate(unitAmount, seats int64, at, start, end time.Time) int64 {
	return mulDivHalfEven(unitAmount, seats, end.Unix()-at.Unix(), end.Unix()-start.Unix())
}

// chargeLine charges terms×seats for what remains of the period [start, end)
// at at; when at == start that is the whole period.
func chargeLine(t PlanTerms, seats int64, at, start, end time.Time) ProrationLine {
	return ProrationLine{
		Description: fmt.Sprintf("Remaining time on %d × %s", seats, t.Name),
		Amount:      prorate(t.UnitAmount, seats, at, start, end),
		Quantity:    seats,
		UnitAmount:  t.UnitAmount,
		PeriodStart: at,
		PeriodEnd:   end,
		Proration:   true,
		PlanID:      t.PlanID,
	}
}

// creditLine refunds the unused remainder of terms×seats already paid for
// the period [start, end).
func creditLine(t PlanTerms, seats int64, at, start, end time.Time) ProrationLine {
	l := chargeLine(t, seats, at, start, end)
	l.Description = fmt.Sprintf("Unused time on %d × %s", seats, t.Name)
	l.Amount = -l.Amount
	return l
}
