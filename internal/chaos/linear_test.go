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

// chaosDuration is how long the fifty writers run: CHAOS_DURATION (`make chaos`), else short.
func chaosDuration(t *testing.T) time.Duration {
	t.Helper()
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("CHAOS_DURATION=%q: want a duration such as 30s", v)
		}
		return d
	}
	return 2 * time.Second
}

// TestChaosFiftyWritersLinearizable has 50 clients change one subscription's seats and read it,
// through two billingd processes, and checks the history is linearizable, then that the
// stream has exactly one event per change answered (and the whole Check passes). The
// subscription is in its trial, so seat changes cost nothing: no upgrade saga, every change is
// one append under the stream's expected version. Reads ask for ?consistent=true, the fold of
// the store: the default answer is the read model's, which is eventually consistent by design.
func TestChaosFiftyWritersLinearizable(t *testing.T) {
	t.Parallel()
	const clients = 50
	s := startForCheck(t, 2)
	s.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	w := &workload{s: s}
	id := w.create("cus_linear", "pro_monthly", 5, 30, "pm_card_ok")
	initial := SeatsState{Version: 1, Seats: 5}

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		acks    []Ack
		outcome = map[int]int{}
	)
	begin := time.Now()
	now := func() int64 { return time.Since(begin).Nanoseconds() }
	deadline := begin.Add(chaosDuration(t))
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
				op := SeatsOp{Write: rng.IntN(2) == 0, Seats: 1 + rng.Int64N(1000)}
				if lastRead > 0 && rng.IntN(8) == 0 {
					op.Seats = lastRead
				}
				method, path, key := http.MethodGet, "/v1/subscriptions/"+id+"?consistent=true", ""
				var body any
				if op.Write {
					method, path, key = http.MethodPost, "/v1/subscriptions/"+id+"/seats", fmt.Sprintf("linear-%d-%d", c, n)
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
				if op.Write && status == http.StatusOK {
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

	// The store: one seats_changed per change answered, at the version and with the seats answered.
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
	answered := map[int64]int64{} // version → seats
	unknown := 0
	for _, op := range history {
		res := op.Output.(SeatsResult)
		switch {
		case !op.Input.(SeatsOp).Write:
		case res.Outcome == Answered:
			if _, dup := answered[res.State.Version]; dup {
				t.Errorf("two changes answered version %d", res.State.Version)
			}
			answered[res.State.Version] = res.State.Seats
		case res.Outcome == Unknown:
			unknown++
		}
	}
	changes := events[1:]
	if len(changes) < len(answered) || len(changes) > len(answered)+unknown {
		t.Errorf("%d events after the creation for %d changes answered (%d unanswered)", len(changes), len(answered), unknown)
	}
	for _, e := range changes {
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		sc, ok := de.(domain.SeatsChanged)
		seats, was := answered[e.Version]
		if !ok || (was && sc.Seats != seats) || (!was && unknown == 0) {
			t.Errorf("version %d is %s %+v; the change answered there: %d seats (answered: %v)", e.Version, e.Type, de, seats, was)
		}
	}
	if len(answered) == 0 {
		t.Error("no change was answered: the test tested nothing")
	}

	settleStart := time.Now()
	s.settle()
	found, err := Check(ctx, s.target, append(w.acks, acks...))
	t.Logf("settled and checked in %s", time.Since(settleStart).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range found {
		t.Errorf("%s: %s", v.Check, v.Detail)
	}
}

// classify reads an answer to a seat change or a read.
func classify(status int, answer []byte, err error) SeatsResult {
	if err != nil || status >= 500 || status == 0 {
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
