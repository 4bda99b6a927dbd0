package chaos

import (
	"fmt"
	"math"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizability of one subscription's seats: many clients change a subscription's seats and
// read it back at once, and every answer must fit one order of the operations that respects
// real time (an operation that returned before another was called comes first). The state is
// (version, seats); porcupine searches for such an order.

// SeatsState is a subscription as the linearizability model sees it.
type SeatsState struct {
	Version int64
	Seats   int64
}

// SeatsOp is a call: a seat change to Seats (Write), or a read of the subscription. Paid says
// the subscription is one whose increases go through the upgrade saga (it is active).
type SeatsOp struct {
	Write bool
	Seats int64
	Paid  bool
}

// Outcome is how a call was answered.
type Outcome int

const (
	// Answered: 200, with the subscription's version and seats (after a write: the state it
	// made).
	Answered Outcome = iota
	// NoChange: 422 no-change, the seats asked for were already the subscription's.
	NoChange
	// Refused: answered with an error that changed nothing (409 after losing too many races).
	Refused
	// Aborted: a paid change's saga was aborted (409 or 402 naming the upgrade): it recorded
	// subscription.upgrade_failed, a version with the seats unchanged.
	Aborted
	// Unknown: no answer (a transport error, a timeout, a 5xx) or a 202 (a saga still running):
	// the write may or may not have happened. Its return time is unknown too (see
	// UnknownReturn).
	Unknown
)

// SeatsResult is a call's answer.
type SeatsResult struct {
	Outcome Outcome
	// State: for Answered, the state answered. For Aborted, the state the abort's
	// subscription.upgrade_failed made, when the store says (found by UpgradeID after the run;
	// the answer names the upgrade, not the version): the zero state when unknown.
	State     SeatsState
	UpgradeID string // for Aborted
}

// UnknownReturn is the return time of an operation whose outcome is unknown: it may take
// effect at any time after its call, so it is treated as never having returned.
const UnknownReturn = math.MaxInt64

// SeatsModel is the sequential specification of a subscription's seats, starting at initial:
//   - a write answered (v, s) happened iff the state was at version v-1 and s is what it
//     asked for; the state becomes (v, s);
//   - a write answered no-change happened when the state had the seats asked for;
//   - a write refused changed nothing;
//   - a paid write aborted moved the state to the next version, seats unchanged (the saga
//     recorded subscription.upgrade_failed before the answer); if the version it recorded is
//     known, the state was the one before it;
//   - a write without an answer either changed nothing or moved the state to the next
//     version with the seats asked for (unless those were already the seats: no change), or,
//     if paid, with the seats unchanged (its saga aborted);
//   - a read returns the state.
func SeatsModel(initial SeatsState) porcupine.Model {
	model := porcupine.NondeterministicModel{
		Init: func() []interface{} { return []interface{}{initial} },
		Step: func(state, input, output interface{}) []interface{} {
			st, in, out := state.(SeatsState), input.(SeatsOp), output.(SeatsResult)
			if !in.Write {
				if out.Outcome != Answered || out.State == st {
					return []interface{}{st}
				}
				return nil
			}
			switch out.Outcome {
			case Answered:
				if out.State.Version == st.Version+1 && out.State.Seats == in.Seats && in.Seats != st.Seats {
					return []interface{}{out.State}
				}
			case NoChange:
				if st.Seats == in.Seats {
					return []interface{}{st}
				}
			case Refused:
				return []interface{}{st}
			case Aborted:
				next := SeatsState{Version: st.Version + 1, Seats: st.Seats}
				if in.Paid && (out.State == SeatsState{} || out.State == next) {
					return []interface{}{next}
				}
			case Unknown:
				next := []interface{}{st}
				if in.Seats != st.Seats {
					next = append(next, SeatsState{Version: st.Version + 1, Seats: in.Seats})
				}
				if in.Paid {
					next = append(next, SeatsState{Version: st.Version + 1, Seats: st.Seats})
				}
				return next
			}
			return nil
		},
		Equal: func(a, b interface{}) bool { return a.(SeatsState) == b.(SeatsState) },
		DescribeOperation: func(input, output interface{}) string {
			in, out := input.(SeatsOp), output.(SeatsResult)
			call := "read()"
			if in.Write {
				call = fmt.Sprintf("seats(%d)", in.Seats)
			}
			switch out.Outcome {
			case Answered:
				return fmt.Sprintf("%s → v%d, %d seats", call, out.State.Version, out.State.Seats)
			case NoChange:
				return call + " → no change"
			case Refused:
				return call + " → refused"
			case Aborted:
				return call + " → aborted"
			}
			return call + " → ?"
		},
		DescribeState: func(state interface{}) string {
			s := state.(SeatsState)
			return fmt.Sprintf("v%d, %d seats", s.Version, s.Seats)
		},
	}
	return model.ToModel()
}

// CheckSeatsHistory checks a history against SeatsModel(initial) for at most timeout. When it
// is not linearizable, the visualization (porcupine's HTML) is written to a temporary file whose
// path is returned.
//
// The reads are thinned first (SparseReads), or fifty clients' reads make the search
// exponentially long.
func CheckSeatsHistory(initial SeatsState, history []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, string, error) {
	model := SeatsModel(initial)
	result, info := porcupine.CheckOperationsVerbose(model, SparseReads(history), timeout)
	if result != porcupine.Illegal {
		return result, "", nil
	}
	f, err := os.CreateTemp("", "linearizability-*.html")
	if err != nil {
		return result, "", err
	}
	defer f.Close()
	if err := porcupine.Visualize(model, info, f); err != nil {
		return result, f.Name(), err
	}
	return result, f.Name(), nil
}

// SparseReads keeps, of the reads that returned one state, only the one that returned first
// and the one called last; the history is linearizable iff the result is.
//
// Why porcupine needs this: it extends a linearization greedily in time order, so it takes a
// write before a concurrent read of the state before it, finds that read impossible when the
// read's return comes, and backtracks through every subset of the reads of the new state it took
// meanwhile: with fifty clients, tens of reads, so 2^tens tries.
//
// Why it is exact: in this model a state is one version, and versions only grow, so all the
// reads that returned state S are linearized in the one stretch [t1, t2] of the linearization
// during which the state is S, in any order among themselves (reads change nothing). Each read
// needs a point of [t1, t2] within its own [call, return]: it needs t1 <= return and call <= t2.
// If the read with the smallest return and the read with the largest call both have one, then
// t1 <= smallest return <= every return and every call <= largest call <= t2, so every other read
// of S has one too (next to either). Dropping operations never makes a linearizable history
// unlinearizable, so the two agree.
func SparseReads(history []porcupine.Operation) []porcupine.Operation {
	type pair struct{ firstReturn, lastCall int }
	reads := map[SeatsState]*pair{}
	for i, op := range history {
		in, out := op.Input.(SeatsOp), op.Output.(SeatsResult)
		if in.Write || out.Outcome != Answered {
			continue
		}
		p, ok := reads[out.State]
		if !ok {
			reads[out.State] = &pair{i, i}
			continue
		}
		if op.Return < history[p.firstReturn].Return {
			p.firstReturn = i
		}
		if op.Call > history[p.lastCall].Call {
			p.lastCall = i
		}
	}
	out := make([]porcupine.Operation, 0, len(history))
	for i, op := range history {
		in, res := op.Input.(SeatsOp), op.Output.(SeatsResult)
		if !in.Write && res.Outcome == Answered {
			if p := reads[res.State]; i != p.firstReturn && i != p.lastCall {
				continue
			}
		}
		out = append(out, op)
	}
	return out
}
