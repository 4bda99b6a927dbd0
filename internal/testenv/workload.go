package testenv

import (
	"math/rand/v2"

	"github.com/billing-oss/billing/domain"
)

// RandomChange picks a command for an existing subscription, weighted like real traffic (seat
// changes and plan changes most often), for the tests that compare read models with a fold of
// a random workload. The domain may refuse it; those tests skip what it refuses.
func RandomChange(rng *rand.Rand, plans []domain.Plan) domain.Command {
	switch k := rng.IntN(20); {
	case k < 6:
		return domain.ChangeSeats{Seats: int64(rng.IntN(12) + 1)}
	case k < 10:
		timing := []domain.Timing{domain.TimingDefault, domain.TimingImmediate, domain.TimingPeriodEnd}[rng.IntN(3)]
		return domain.ChangePlan{Plan: plans[rng.IntN(len(plans))], Seats: int64(rng.IntN(4)), Timing: timing}
	case k < 12:
		return domain.Pause{}
	case k < 15:
		return domain.Resume{}
	case k < 16:
		return domain.Cancel{}
	case k < 18:
		return domain.Cancel{AtPeriodEnd: true}
	default:
		return domain.UndoCancel{}
	}
}
