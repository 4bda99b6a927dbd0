package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// TestSeatsModelTellsLinearizableHistories feeds the model doctored histories: it must accept
// the linearizable ones and refuse the others, or the chaos test below could not fail.
func TestSeatsModelTellsLinearizableHistories(t *testing.T) {
	t.Parallel()
	start := SeatsState{Version: 1, Seats: 5}
	write := func(client int, seats int64, call, ret int64, out SeatsResult) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: SeatsOp{Write: true, Seats: seats}, Call: call, Output: out, Return: ret}
	}
	paidWrite := func(client int, seats int64, call, ret int64, out SeatsResult) porcupine.Operation {
		op := write(client, seats, call, ret, out)
		op.Input = SeatsOp{Write: true, Seats: seats, Paid: true}
		return op
	}
	read := func(client int, call, ret int64, version, seats int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: SeatsOp{}, Call: call,
			Output: SeatsResult{Outcome: Answered, State: SeatsState{version, seats}}, Return: ret}
	}
	answered := func(version, seats int64) SeatsResult {
		return SeatsResult{Outcome: Answered, State: SeatsState{version, seats}}
	}
	tests := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"a write then a read of it", []porcupine.Operation{
			write(0, 6, 0, 10, answered(2, 6)), read(1, 11, 20, 2, 6)}, porcupine.Ok},
		{"concurrent writes in either order", []porcupine.Operation{
			write(0, 6, 0, 10, answered(3, 6)), write(1, 7, 1, 9, answered(2, 7)), read(2, 11, 12, 3, 6)}, porcupine.Ok},
		{"a read concurrent with a write sees either state", []porcupine.Operation{
			write(0, 6, 0, 10, answered(2, 6)), read(1, 1, 9, 1, 5), read(2, 2, 8, 2, 6)}, porcupine.Ok},
		{"a stale read after the write returned", []porcupine.Operation{
			write(0, 6, 0, 10, answered(2, 6)), read(1, 11, 20, 1, 5)}, porcupine.Illegal},
		{"two writes answered the same version (a lost update)", []porcupine.Operation{
			write(0, 6, 0, 10, answered(2, 6)), write(1, 7, 1, 9, answered(2, 7))}, porcupine.Illegal},
		{"a version skipped", []porcupine.Operation{
			write(0, 6, 0, 10, answered(3, 6))}, porcupine.Illegal},
		{"a read going back in time", []porcupine.Operation{
			write(0, 6, 0, 10, answered(2, 6)), read(1, 1, 11, 2, 6), read(2, 12, 13, 1, 5)}, porcupine.Illegal},
		{"no change answered when the seats differed", []porcupine.Operation{
			write(0, 6, 0, 10, SeatsResult{Outcome: NoChange})}, porcupine.Illegal},
		{"no change answered when they did not", []porcupine.Operation{
			write(0, 5, 0, 10, SeatsResult{Outcome: NoChange})}, porcupine.Ok},
		{"a refused write changes nothing", []porcupine.Operation{
			write(0, 6, 0, 10, SeatsResult{Outcome: Refused}), read(1, 11, 12, 2, 6)}, porcupine.Illegal},
		{"an unanswered write may have happened", []porcupine.Operation{
			write(0, 6, 0, UnknownReturn, SeatsResult{Outcome: Unknown}), read(1, 11, 12, 2, 6)}, porcupine.Ok},
		{"an unanswered write may not have", []porcupine.Operation{
			write(0, 6, 0, UnknownReturn, SeatsResult{Outcome: Unknown}), read(1, 11, 12, 1, 5)}, porcupine.Ok},
		{"an aborted paid change records a version, seats unchanged", []porcupine.Operation{
			paidWrite(0, 6, 0, 10, SeatsResult{Outcome: Aborted}), read(1, 11, 12, 2, 5)}, porcupine.Ok},
		{"but not with the seats it asked for", []porcupine.Operation{
			paidWrite(0, 6, 0, 10, SeatsResult{Outcome: Aborted}), read(1, 11, 12, 2, 6)}, porcupine.Illegal},
		{"an abort the store recorded at another version", []porcupine.Operation{
			paidWrite(0, 6, 0, 10, SeatsResult{Outcome: Aborted, State: SeatsState{3, 5}})}, porcupine.Illegal},
		{"and a free change is never aborted", []porcupine.Operation{
			write(0, 6, 0, 10, SeatsResult{Outcome: Aborted})}, porcupine.Illegal},
		{"but not with other seats", []porcupine.Operation{
			write(0, 6, 0, UnknownReturn, SeatsResult{Outcome: Unknown}), read(1, 11, 12, 2, 7)}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, path, err := CheckSeatsHistory(start, tt.history, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if path != "" {
				os.Remove(path)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if (got == porcupine.Illegal) != (path != "") {
				t.Errorf("result %s with visualization %q", got, path)
			}
		})
	}
}

// TestChaosFiftyWritersLinearizable has 50 clients change one subscription's seats and read it,
// through two billingd processes, and checks the history is linearizable, then that the
// stream has exactly one event per change answered (and the whole Check passes). It does so
// twice: on a subscription in its trial, where seat changes cost nothing (every change is one
// append under the stream's expected version), and on an active one, where every increase is
// paid for through the upgrade saga (priced at one version, applied at the next, aborted with
// subscription.upgrade_failed when another change got there first). Reads ask for
// ?consistent=true, the fold of the store: the default answer is the read model's, which is
// eventually consistent by design.
func TestChaosFiftyWritersLinearizable(t *testing.T) {
	t.Parallel()
	s := startForCheck(t, 2)
	s.client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 50}}
	w := &workload{s: s}
	var acks []Ack
	for _, tt := range []struct {
		name      string
		trialDays int
		paid      bool
	}{{"trialing, changes free", 30, false}, {"active, increases paid through the saga", 0, true}} {
		t.Run(tt.name, func(t *testing.T) {
			id := w.create("cus_linear_"+fmt.Sprint(tt.paid), "pro_monthly", 5, tt.trialDays, "pm_card_ok")
			acks = append(acks, fiftyWriters(t, s, id, tt.paid)...)
		})
	}
	settleStart := time.Now()
	s.settle()
	found, err := Check(context.Background(), s.target, append(w.acks, acks...))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("settled and checked in %s", time.Since(settleStart).Round(time.Millisecond))
	for _, v := range found {
		t.Errorf("%s: %s", v.Check, v.Detail)
	}
}

// fiftyWriters runs the clients against subscription id (at version 1 with 5 seats), checks
// the history and the stream, and returns the acks of the changes.
func fiftyWriters(t *testing.T, s *service, id string, paid bool) []Ack {
	const clients = 50
	initial := SeatsState{Version: 1, Seats: 5}
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		acks    []Ack
		outcome = map[int]int{}
	)
	begin := time.Now()
	now := func() int64 { return time.Since(begin).Nanoseconds() }
	// Half the scenarios' length, and at most 15 s: the checker's search grows with the
	// history faster than the history does.
	deadline := begin.Add(min(chaosDuration(t)/2, 15*time.Second))
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			lastRead := int64(0)
			for n := 0; time.Now().Before(deadline); n++ {
				// Seats from a wide range, so that a count rarely comes back at another version:
				// a no-change answer then names the state it saw, and the checker is not left to
				// try it at every version that had its count (which takes it exponentially long).
				// Some writes ask for the count last read, to be answered no-change when nothing
				// changed since.
				op := SeatsOp{Write: rng.IntN(2) == 0, Seats: 1 + rng.Int64N(1000), Paid: paid}
				if lastRead > 0 && rng.IntN(8) == 0 {
					op.Seats = lastRead
				}
				method, path, key := http.MethodGet, "/v1/subscriptions/"+id+"?consistent=true", ""
				var body any
				if op.Write {
					method, path, key = http.MethodPost, "/v1/subscriptions/"+id+"/seats", fmt.Sprintf("linear-%s-%d-%d", id, c, n)
					body = map[string]any{"seats": op.Seats}
				}
				call := now()
				status, answer, err := s.do(c, method, path, key, body)
				ret := now()
				res := classify(status, answer, err)
				if !op.Write && res.Outcome == Answered {
					lastRead = res.State.Seats
				}
				if res.Outcome == Unknown {
					ret = UnknownReturn
				}
				mu.Lock()
				outcome[status]++
				// A read without an answer and a refused write say nothing (every state allows
				// them); leaving them out spares the checker orders that cannot matter.
				if (op.Write && res.Outcome != Refused) || (!op.Write && res.Outcome == Answered) {
					history = append(history, porcupine.Operation{ClientId: c, Input: op, Call: call, Output: res, Return: ret})
				}
				if op.Write && (status < 300 || res.Outcome == Aborted) {
					raw, _ := json.Marshal(body)
					acks = append(acks, Ack{Key: key, Method: method, Path: path, Body: raw, Status: status, Answer: answer, At: time.Now()})
				}
				mu.Unlock()
				if res.Outcome == Unknown {
					return // its next call would overlap this one, which never returned
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d operations in %s, answers by status %v", len(history), time.Since(begin).Round(time.Millisecond), outcome)
	if f := os.Getenv("CHAOS_HISTORY"); f != "" {
		b, _ := json.Marshal(history)
		os.WriteFile(f, b, 0o644)
	}

	// An abort answers the upgrade's id, not the version its upgrade_failed took: the store
	// says which (and the checks below hold the store to the answers). Without it each abort
	// could be anywhere in its interval, and fifty of them leave the checker 2^50 orders.
	ctx := context.Background()
	db, err := pgxpool.New(ctx, s.target.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, events, err := eventstore.LoadSubscription(ctx, db, uuid.MustParse(id), eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failedAt := map[string]SeatsState{}
	seats := initial.Seats
	for _, e := range events {
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		switch de := de.(type) {
		case domain.SeatsChanged:
			seats = de.Seats
		case domain.UpgradeFailed:
			failedAt[de.UpgradeID] = SeatsState{Version: e.Version, Seats: seats}
		}
	}
	for i, op := range history {
		if res := op.Output.(SeatsResult); res.Outcome == Aborted {
			res.State = failedAt[res.UpgradeID]
			history[i].Output = res
		}
	}

	checkStart := time.Now()
	result, path, err := CheckSeatsHistory(initial, history, 15*time.Second)
	t.Logf("linearizability: %s in %s", result, time.Since(checkStart).Round(time.Millisecond))
	switch {
	case err != nil:
		t.Errorf("linearizability: %s (visualization %q: %v)", result, path, err)
	case result == porcupine.Illegal:
		t.Errorf("the history is not linearizable; visualization: %s", path)
	case result == porcupine.Unknown:
		t.Logf("linearizability: the checker timed out without a verdict")
	}

	// The store: one seats_changed per change answered, at the version and with the seats
	// answered, and one upgrade_failed per change aborted.
	answered := map[int64]int64{} // version → seats
	aborted, unknown := 0, 0
	for _, op := range history {
		res := op.Output.(SeatsResult)
		switch {
		case !op.Input.(SeatsOp).Write:
		case res.Outcome == Answered:
			if _, dup := answered[res.State.Version]; dup {
				t.Errorf("two changes answered version %d", res.State.Version)
			}
			answered[res.State.Version] = res.State.Seats
		case res.Outcome == Aborted:
			aborted++
		case res.Outcome == Unknown:
			unknown++
		}
	}
	failed := 0
	for _, e := range events[1:] {
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		seats, was := answered[e.Version]
		switch de := de.(type) {
		case domain.SeatsChanged:
			if (was && de.Seats != seats) || (!was && unknown == 0) {
				t.Errorf("version %d: %d seats; the change answered there: %d seats (answered: %v)", e.Version, de.Seats, seats, was)
			}
		case domain.UpgradeFailed:
			failed++
			if was {
				t.Errorf("version %d: %s, where a change was answered", e.Version, e.Type)
			}
		default:
			t.Errorf("version %d: unexpected %s", e.Version, e.Type)
		}
	}
	if changed := len(events) - 1 - failed; changed < len(answered) || changed > len(answered)+unknown {
		t.Errorf("%d changes stored for %d answered (%d unanswered)", changed, len(answered), unknown)
	}
	if failed < aborted || failed > aborted+unknown {
		t.Errorf("%d upgrade failures stored for %d aborts answered (%d unanswered)", failed, aborted, unknown)
	}
	if len(answered) == 0 {
		t.Error("no change was answered: the test tested nothing")
	}
	return acks
}

// classify reads an answer to a seat change or a read.
func classify(status int, answer []byte, err error) SeatsResult {
	// A 202 is a paid change whose saga was still running when the request stopped waiting: it
	// completes or aborts later, so its outcome is as unknown as a lost answer's.
	if err != nil || status >= 500 || status == 0 || status == http.StatusAccepted {
		return SeatsResult{Outcome: Unknown}
	}
	switch status {
	case http.StatusOK:
		var body struct {
			Subscription *struct {
				Version int64 `json:"version"`
				Seats   int64 `json:"seats"`
			} `json:"subscription"`
			Version int64 `json:"version"`
			Seats   int64 `json:"seats"`
		}
		if json.Unmarshal(answer, &body) != nil {
			return SeatsResult{Outcome: Unknown}
		}
		if body.Subscription != nil {
			return SeatsResult{Outcome: Answered, State: SeatsState{body.Subscription.Version, body.Subscription.Seats}}
		}
		return SeatsResult{Outcome: Answered, State: SeatsState{body.Version, body.Seats}}
	case http.StatusConflict, http.StatusPaymentRequired:
		var p struct {
			UpgradeID string `json:"upgrade_id"`
		}
		if json.Unmarshal(answer, &p) == nil && p.UpgradeID != "" {
			return SeatsResult{Outcome: Aborted, UpgradeID: p.UpgradeID}
		}
	case http.StatusUnprocessableEntity:
		var p struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(answer, &p) == nil && len(p.Type) >= len("no-change") && p.Type[len(p.Type)-len("no-change"):] == "no-change" {
			return SeatsResult{Outcome: NoChange}
		}
	}
	return SeatsResult{Outcome: Refused}
}
