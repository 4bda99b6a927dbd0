package domain_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
)

// FuzzDecide runs a program of up to 64 commands, read from the fuzzer's bytes, against one
// subscription: random command kinds, fields (valid, extreme and invalid plans, seats, trials,
// timings, ids) and times (forwards, backwards, across period ends, in other time zones). Each
// command is decided against the state folded from the events decided so far. Properties:
//   - Decide never panics and is a pure function of its arguments;
//   - an error is one of the domain's own errors and comes with no events;
//   - success is at least one event, each surviving the JSON round trip the store puts it
//     through, dated now (UTC, whole seconds);
//   - the state folded after every step keeps the invariants below (seats within
//     1..MaxSeats, PeriodStart < PeriodEnd, time and Version never going backwards, …);
//   - replaying all the events from scratch gives exactly the state built step by step.
func FuzzDecide(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzDecide", decideSeeds())
	f.Fuzz(func(t *testing.T, program []byte) {
		r := &programReader{data: program}
		now := decideBases[int(r.byte())%len(decideBases)]
		var s domain.Subscription
		var history []domain.Event
		for step := 0; step < 64 && !r.done(); step++ {
			c := r.command()
			now = r.advance(now)
			before := cloneSubscription(s)
			events, err := domain.Decide(s, c, now)
			where := fmt.Sprintf("step %d: Decide(%s, %#v, %s)", step, describeState(before), c, now.Format(time.RFC3339Nano))

			if !reflect.DeepEqual(s, before) {
				t.Fatalf("%s modified the state it was given", where)
			}
			events2, err2 := domain.Decide(s, c, now)
			if !reflect.DeepEqual(events, events2) || fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("%s is not deterministic: %v, %v then %v, %v", where, events, err, events2, err2)
			}
			if err != nil {
				if len(events) != 0 {
					t.Fatalf("%s = %d events and error %v; an error must come with no events", where, len(events), err)
				}
				if !isDomainError(err) {
					t.Fatalf("%s = %v (%T), which is none of the domain's errors (the API would answer 500)", where, err, err)
				}
				checkRefusal(t, where, s, c, now, err)
				continue
			}
			if len(events) == 0 {
				t.Fatalf("%s succeeded with no events", where)
			}
			wantAt := now.UTC().Truncate(time.Second)
			for _, e := range events {
				checkPersistable(t, where, e)
				if !e.OccurredAt().Equal(wantAt) || e.OccurredAt().Location() != time.UTC {
					t.Errorf("%s: %s occurred at %s, want %s (UTC, whole seconds)", where, e.EventType(), e.OccurredAt(), wantAt)
				}
				checkProration(t, where, e, s)
				next := domain.Evolve(s, e)
				checkTransition(t, where, s, next, e)
				s = next
			}
			history = append(history, events...)
			checkInvariants(t, where, s)
		}
		if replayed := domain.Fold(history); !reflect.DeepEqual(replayed, s) {
			t.Errorf("replaying %d events gives %s, but step by step gave %s", len(history), describeState(replayed), describeState(s))
		}
	})
}

// decideBases are the times a program starts at: a month end (periods clamp to shorter months),
// a leap day, the Unix epoch, a time in another zone, and one with a fraction of a second.
var decideBases = []time.Time{
	time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC),
	time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC),
	time.Unix(0, 0).UTC(),
	time.Date(2026, 3, 29, 1, 30, 0, 0, time.FixedZone("UTC+13:45", 13*3600+45*60)),
	time.Date(2026, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
}

// Programs stay within [minTime, maxTime]: times the service's clock can give, far enough from
// year 9999 that every period end a command computes is still a time JSON can encode.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// programReader turns the fuzzer's bytes into commands; past the end it reads zeros.
type programReader struct{ data []byte }

func (r *programReader) done() bool { return len(r.data) == 0 }

func (r *programReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *programReader) uint64() uint64 {
	var b [8]byte
	for i := range b {
		b[i] = r.byte()
	}
	return binary.BigEndian.Uint64(b[:])
}

// Command kinds, by the first byte of each step.
const (
	kindCreate = iota
	kindChangePlan
	kindChangeSeats
	kindCancel
	kindUndoCancel
	kindPause
	kindResume
	kindNil // not a command at all
	kindCount
)

func (r *programReader) command() domain.Command {
	switch r.byte() % kindCount {
	case kindCreate:
		c := domain.Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: r.plan(), Seats: r.seats(), TrialDays: r.trialDays()}
		switch r.byte() % 8 {
		case 1:
			c.SubscriptionID = ""
		case 2:
			c.CustomerID = " \t"
		case 3:
			c.CustomerID = "x'); DROP TABLE events;--\x00"
		}
		return c
	case kindChangePlan:
		timings := []domain.Timing{domain.TimingDefault, domain.TimingImmediate, domain.TimingPeriodEnd, "tomorrow", "IMMEDIATE"}
		c := domain.ChangePlan{Plan: r.plan(), Timing: timings[int(r.byte())%len(timings)]}
		if r.byte()%2 == 1 {
			c.Seats = r.seats() // else 0: keep the current seats
		}
		return c
	case kindChangeSeats:
		return domain.ChangeSeats{Seats: r.seats()}
	case kindCancel:
		return domain.Cancel{AtPeriodEnd: r.byte()%2 == 1}
	case kindUndoCancel:
		return domain.UndoCancel{}
	case kindPause:
		return domain.Pause{}
	case kindResume:
		return domain.Resume{}
	}
	return nil
}

// fuzzPlans are the catalog's plans, then extreme valid plans, then invalid ones.
var fuzzPlans = func() []domain.Plan {
	plans := domain.DefaultCatalog().Plans()
	plans = append(plans,
		domain.Plan{ID: "max_yearly", Name: "Max", Interval: domain.IntervalYear, UnitAmount: domain.MaxUnitAmount, Currency: "USD", TrialDays: domain.MaxTrialDays},
		domain.Plan{ID: "max_monthly", Name: "Max", Interval: domain.IntervalMonth, UnitAmount: domain.MaxUnitAmount, Currency: "USD", Features: []string{}},
		domain.Plan{ID: "free", Name: "Free", Interval: domain.IntervalMonth, UnitAmount: 0, Currency: "USD"},
		domain.Plan{ID: "odd_yearly", Name: "Odd", Interval: domain.IntervalYear, UnitAmount: 7, Currency: "USD", Features: []string{"a"}},
		domain.Plan{ID: "yen", Name: "Yen", Interval: domain.IntervalMonth, UnitAmount: 500, Currency: "JPY", TrialDays: 1},
		// Invalid: Decide must refuse them, never compute with them.
		domain.Plan{},
		domain.Plan{ID: "weekly", Name: "Weekly", Interval: "week", UnitAmount: 100, Currency: "USD"},
		domain.Plan{ID: "negative", Name: "Negative", Interval: domain.IntervalMonth, UnitAmount: -1, Currency: "USD"},
		domain.Plan{ID: "too_dear", Name: "Dear", Interval: domain.IntervalYear, UnitAmount: domain.MaxUnitAmount + 1, Currency: "USD"},
		domain.Plan{ID: "usd_lower", Name: "Lower", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "usd"},
		domain.Plan{ID: "Bad ID", Name: "Bad", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "USD"},
		domain.Plan{ID: "long_trial", Name: "Long", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "USD", TrialDays: domain.MaxTrialDays + 1},
		domain.Plan{ID: "empty_feature", Name: "Empty", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "USD", Features: []string{""}},
	)
	return plans
}()

func (r *programReader) plan() domain.Plan {
	p := fuzzPlans[int(r.byte())%len(fuzzPlans)]
	p.Features = slices.Clone(p.Features)
	return p
}

func (r *programReader) seats() int64 {
	switch r.byte() % 9 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return -1
	case 3:
		return domain.MaxSeats
	case 4:
		return domain.MaxSeats + 1
	case 5:
		return math.MinInt64
	case 6:
		return math.MaxInt64
	case 7:
		return int64(r.byte()%10) + 1
	}
	return int64(r.uint64())
}

func (r *programReader) trialDays() *int {
	var d int
	switch r.byte() % 8 {
	case 0:
		return nil // the plan's default
	case 1:
		d = 0
	case 2:
		d = 1
	case 3:
		d = domain.MaxTrialDays
	case 4:
		d = domain.MaxTrialDays + 1
	case 5:
		d = -1
	case 6:
		d = math.MinInt
	default:
		d = int(r.byte())
	}
	return &d
}

// advance moves the command time: not at all, by a second either way, within a second, by a
// day, past a monthly or yearly period end, or by any signed 32-bit number of seconds.
func (r *programReader) advance(now time.Time) time.Time {
	switch r.byte() % 8 {
	case 1:
		now = now.Add(time.Second)
	case 2:
		now = now.Add(-time.Second)
	case 3:
		now = now.Add(500 * time.Millisecond)
	case 4:
		now = now.AddDate(0, 0, 1)
	case 5:
		now = now.AddDate(0, 1, 1)
	case 6:
		now = now.AddDate(1, 0, 1)
	case 7:
		now = now.Add(time.Duration(int32(r.uint64())) * time.Second)
	}
	if now.Before(minTime) {
		return minTime
	}
	if now.After(maxTime) {
		return maxTime
	}
	return now
}

// isDomainError reports whether err is one of the errors Decide documents (errors.go).
func isDomainError(err error) bool {
	for _, sentinel := range []error{domain.ErrSubscriptionNotFound, domain.ErrSubscriptionExists,
		domain.ErrSubscriptionCanceled, domain.ErrNoChange, domain.ErrCancellationNotScheduled,
		domain.ErrCancellationAlreadyScheduled, domain.ErrUnknownCommand} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	var (
		seats      *domain.InvalidSeatsError
		trial      *domain.InvalidTrialError
		customer   *domain.InvalidCustomerError
		id         *domain.InvalidSubscriptionIDError
		unknown    *domain.UnknownPlanError
		plan       *domain.InvalidPlanError
		currency   *domain.CurrencyMismatchError
		timing     *domain.InvalidTimingError
		transition *domain.InvalidTransitionError
		order      *domain.TimeOrderError
		ended      *domain.PeriodEndedError
	)
	return errors.As(err, &seats) || errors.As(err, &trial) || errors.As(err, &customer) ||
		errors.As(err, &id) || errors.As(err, &unknown) || errors.As(err, &plan) ||
		errors.As(err, &currency) || errors.As(err, &timing) || errors.As(err, &transition) ||
		errors.As(err, &order) || errors.As(err, &ended)
}

// checkRefusal checks refusals the state alone decides.
func checkRefusal(t *testing.T, where string, s domain.Subscription, c domain.Command, now time.Time, err error) {
	t.Helper()
	if c == nil {
		if !errors.Is(err, domain.ErrUnknownCommand) {
			t.Errorf("%s = %v, want ErrUnknownCommand", where, err)
		}
		return
	}
	_, isCreate := c.(domain.Create)
	switch {
	case isCreate && s.Exists():
		if !errors.Is(err, domain.ErrSubscriptionExists) {
			t.Errorf("%s = %v, want ErrSubscriptionExists", where, err)
		}
	case !isCreate && !s.Exists():
		if !errors.Is(err, domain.ErrSubscriptionNotFound) {
			t.Errorf("%s = %v, want ErrSubscriptionNotFound", where, err)
		}
	case !isCreate && s.Status == domain.StatusCanceled:
		if !errors.Is(err, domain.ErrSubscriptionCanceled) {
			t.Errorf("%s = %v, want ErrSubscriptionCanceled", where, err)
		}
	}
}

// checkPersistable: an event survives the JSON round trip of the store unchanged, exactly.
func checkPersistable(t *testing.T, where string, e domain.Event) {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("%s: %s does not encode: %v", where, e.EventType(), err)
	}
	back, err := domain.DecodeEvent(e.EventType(), data)
	if err != nil {
		t.Fatalf("%s: %s encoded as %s does not decode: %v", where, e.EventType(), data, err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("%s: %s changes in the JSON round trip:\n %#v\n %#v", where, e.EventType(), e, back)
	}
}

// checkProration: a credit is never positive, a charge never negative, neither exceeds a full
// period of the seats, and both cover what remains of the period from now.
func checkProration(t *testing.T, where string, e domain.Event, s domain.Subscription) {
	t.Helper()
	var lines []domain.ProrationLine
	switch e := e.(type) {
	case domain.PlanChanged:
		lines = e.Proration
	case domain.SeatsChanged:
		lines = e.Proration
	default:
		return
	}
	if len(lines) != 0 && len(lines) != 2 {
		t.Fatalf("%s: %d proration lines, want none or a credit and a charge", where, len(lines))
	}
	if len(lines) > 0 && s.Status != domain.StatusActive {
		t.Errorf("%s: proration while %s; only a paid (active) period prorates", where, s.Status)
	}
	for i, l := range lines {
		full := l.UnitAmount * l.Quantity // at most MaxUnitAmount × MaxSeats: no overflow
		switch {
		case !validSeats(l.Quantity) || l.UnitAmount < 0 || l.UnitAmount > domain.MaxUnitAmount:
			t.Errorf("%s: line %d has quantity %d, unit amount %d", where, i, l.Quantity, l.UnitAmount)
		case i == 0 && (l.Amount > 0 || -l.Amount > full):
			t.Errorf("%s: credit line amount %d outside [-%d, 0]", where, l.Amount, full)
		case i == 1 && (l.Amount < 0 || l.Amount > full):
			t.Errorf("%s: charge line amount %d outside [0, %d]", where, l.Amount, full)
		case !l.PeriodStart.Equal(e.OccurredAt()) || !l.PeriodStart.Before(l.PeriodEnd):
			t.Errorf("%s: line %d covers [%s, %s), want from %s to a later period end", where, i, l.PeriodStart, l.PeriodEnd, e.OccurredAt())
		case !l.Proration:
			t.Errorf("%s: line %d is not marked as a proration", where, i)
		}
	}
}

// checkTransition: Evolve counts the event, and time never runs backwards.
func checkTransition(t *testing.T, where string, from, to domain.Subscription, e domain.Event) {
	t.Helper()
	if to.Version != from.Version+1 {
		t.Errorf("%s: %s took version %d to %d", where, e.EventType(), from.Version, to.Version)
	}
	if to.UpdatedAt.Before(from.UpdatedAt) {
		t.Errorf("%s: %s moved updated_at back from %s to %s", where, e.EventType(), from.UpdatedAt, to.UpdatedAt)
	}
	if from.Status == domain.StatusCanceled {
		t.Errorf("%s: %s followed a cancellation", where, e.EventType())
	}
}

// checkInvariants are what every state folded from decided events satisfies.
func checkInvariants(t *testing.T, where string, s domain.Subscription) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: invariant broken in %s: %s", where, describeState(s), fmt.Sprintf(format, args...))
	}
	if !s.Exists() {
		fail("a successful command left no subscription")
		return
	}
	if !validSeats(s.Seats) {
		fail("seats %d outside 1..%d", s.Seats, domain.MaxSeats)
	}
	if !s.PeriodStart.Before(s.PeriodEnd) {
		fail("period start %s is not before its end %s", s.PeriodStart, s.PeriodEnd)
	}
	if s.BillingAnchor.IsZero() || s.BillingAnchor.After(s.PeriodEnd) {
		fail("billing anchor %s outside the first period's end %s", s.BillingAnchor, s.PeriodEnd)
	}
	if s.UpdatedAt.Before(s.CreatedAt) {
		fail("updated %s before created %s", s.UpdatedAt, s.CreatedAt)
	}
	if !s.Plan.Interval.Valid() || s.Plan.UnitAmount < 0 || s.Plan.UnitAmount > domain.MaxUnitAmount || s.Plan.Currency == "" {
		fail("plan terms %+v", s.Plan)
	}
	if m := s.MRR(); m < 0 || (m != 0 && s.Status != domain.StatusActive && s.Status != domain.StatusPastDue) {
		fail("MRR %d while %s", m, s.Status)
	}
	switch s.Status {
	case domain.StatusTrialing:
		if s.TrialEnd.IsZero() || !s.TrialEnd.Equal(s.PeriodEnd) {
			fail("trialing with trial end %s, period end %s", s.TrialEnd, s.PeriodEnd)
		}
	case domain.StatusActive, domain.StatusPastDue, domain.StatusPaused, domain.StatusCanceled:
	default:
		fail("unknown status %q", s.Status)
	}
	if (s.Status == domain.StatusCanceled) != !s.CanceledAt.IsZero() {
		fail("status %s with canceled_at %s", s.Status, s.CanceledAt)
	}
	if (s.Status == domain.StatusPaused) != !s.PausedAt.IsZero() {
		fail("status %s with paused_at %s", s.Status, s.PausedAt)
	}
	if s.CancelAtPeriodEnd && s.Status == domain.StatusCanceled {
		fail("canceled with a cancellation still scheduled")
	}
	if c := s.ScheduledChange; c != nil {
		if s.Status == domain.StatusCanceled || s.CancelAtPeriodEnd {
			fail("a plan change scheduled while %s (cancel at period end: %t)", s.Status, s.CancelAtPeriodEnd)
		}
		if !validSeats(c.Seats) || !c.EffectiveAt.Equal(s.PeriodEnd) || !c.Plan.Interval.Valid() {
			fail("scheduled change %+v (period end %s)", *c, s.PeriodEnd)
		}
	}
}

// validSeats is the seat rule, restated here rather than calling domain.ValidateSeats, so that
// a regression in it is caught rather than shared.
func validSeats(n int64) bool { return n >= 1 && n <= domain.MaxSeats }

func cloneSubscription(s domain.Subscription) domain.Subscription {
	s.Plan.Features = slices.Clone(s.Plan.Features)
	if s.ScheduledChange != nil {
		c := *s.ScheduledChange
		c.Plan.Features = slices.Clone(c.Plan.Features)
		s.ScheduledChange = &c
	}
	return s
}

func describeState(s domain.Subscription) string {
	if !s.Exists() {
		return "{no subscription}"
	}
	return fmt.Sprintf("{v%d %s %s×%d period [%s, %s) updated %s cancel_at_end=%t scheduled=%v}",
		s.Version, s.Status, s.Plan.PlanID, s.Seats, s.PeriodStart.Format(time.RFC3339), s.PeriodEnd.Format(time.RFC3339),
		s.UpdatedAt.Format(time.RFC3339), s.CancelAtPeriodEnd, s.ScheduledChange != nil)
}

// decideSeeds are programs that walk through the interesting paths. A program is a byte
// choosing the start time (decideBases), then steps: a kind byte (kindCreate …), the command's
// field bytes as programReader reads them, and how far the time moves before it is decided
// (see advance).
func decideSeeds() []fuzzcorpus.Seed {
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	b := func(bytes ...byte) []byte { return bytes }
	// Field encodings. Plans index fuzzPlans: 0 starter_monthly, 1 pro_monthly,
	// 2 business_monthly, 3 starter_yearly, 6 pro_monthly_eur, 7 max_yearly, 8 max_monthly,
	// 9 free, 12 the zero Plan, 13 weekly.
	seats := func(n byte) []byte { return b(7, n-1) } // 1..10 seats
	const (
		seatsZero, seatsOne, seatsMinusOne, seatsMax, seatsOverMax, seatsMinInt, seatsMaxInt = 0, 1, 2, 3, 4, 5, 6
	)
	trialDefault, noTrial, trialMax, trialOverMax, trialMinusOne := b(0), b(1), b(3), b(4), b(5)
	days := func(n byte) []byte { return b(7, n) }
	create := func(plan byte, seats, trial []byte, variant byte) []byte {
		return cat(b(kindCreate, plan), seats, trial, b(variant))
	}
	changePlan := func(plan, timing byte, seats []byte) []byte { // timing: 0 default, 1 immediate, 2 period_end, 3-4 invalid
		if seats == nil {
			return b(kindChangePlan, plan, timing, 0)
		}
		return cat(b(kindChangePlan, plan, timing, 1), seats)
	}
	changeSeats := func(seats []byte) []byte { return cat(b(kindChangeSeats), seats) }
	cancel := func(atPeriodEnd byte) []byte { return b(kindCancel, atPeriodEnd) }
	const (
		stay, plusSecond, minusSecond, plusHalfSecond, plusDay, plusMonth, plusYear = 0, 1, 2, 3, 4, 5, 6
	)
	seconds := func(n int32) []byte {
		return b(7, 0, 0, 0, 0, byte(uint32(n)>>24), byte(uint32(n)>>16), byte(uint32(n)>>8), byte(n))
	}
	active := create(1, seats(2), noTrial, 0)

	return []fuzzcorpus.Seed{
		fuzzcorpus.S("empty", b()),
		fuzzcorpus.S("not-a-command", b(0, kindNil, stay)),
		fuzzcorpus.S("commands-before-create", cat(b(0), b(kindPause, stay), changeSeats(seats(3)), b(stay), b(kindResume, stay))),
		fuzzcorpus.S("create-active", cat(b(0), active, b(stay))),
		fuzzcorpus.S("create-with-default-trial", cat(b(0), create(2, seats(1), trialDefault, 0), b(stay))),
		fuzzcorpus.S("create-twice", cat(b(0), active, b(plusSecond), create(2, seats(1), noTrial, 0), b(plusSecond))),
		fuzzcorpus.S("create-invalid-fields", cat(b(0),
			create(12, b(seatsOne), noTrial, 0), b(stay),
			create(13, b(seatsZero), trialOverMax, 0), b(stay),
			create(1, b(seatsOverMax), trialMinusOne, 1), b(stay),
			create(1, b(seatsMinInt), b(6), 2), b(stay),
			create(1, b(seatsMaxInt), noTrial, 3), b(stay),
			create(1, b(seatsMinusOne), noTrial, 0), b(stay),
			create(1, b(seatsZero), noTrial, 0), b(stay))),
		fuzzcorpus.S("upgrade-downgrade-interval-change", cat(b(0), active,
			b(plusDay), changePlan(2, 0, seats(4)), b(plusDay), // upgrade now, prorated
			changePlan(0, 0, nil), b(plusDay), // downgrade: waits for the period end
			changePlan(0, 0, nil), b(plusDay), // the same again: no change
			changePlan(3, 1, nil), b(plusDay), // to yearly, now: a new period
			changePlan(6, 0, nil), b(plusDay), // EUR: currency mismatch
			changePlan(3, 0, nil), b(plusDay))), // the same plan and seats: no change
		fuzzcorpus.S("seats-extremes", cat(b(3), create(7, b(seatsMax), noTrial, 0), b(plusSecond),
			changeSeats(b(seatsZero)), b(plusSecond), changeSeats(b(seatsMinusOne)), b(plusSecond),
			changeSeats(b(seatsOne)), b(plusHalfSecond), changeSeats(b(seatsMax)), b(plusSecond),
			changeSeats(b(seatsOverMax)), b(plusSecond), changeSeats(b(seatsMinInt)), b(plusSecond),
			changeSeats(b(seatsMaxInt)), b(plusSecond), changeSeats(b(8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40)), b(plusSecond))),
		fuzzcorpus.S("trial-then-changes", cat(b(1), create(2, seats(1), trialMax, 0), b(plusDay),
			changePlan(8, 1, seats(3)), b(plusDay), changeSeats(seats(9)), b(plusDay),
			b(kindPause), b(plusSecond), cancel(1), b(plusSecond), changePlan(2, 2, nil), b(plusSecond))),
		fuzzcorpus.S("cancel-undo-pause-resume", cat(b(0), create(0, seats(5), noTrial, 0), b(stay),
			cancel(1), b(plusSecond), cancel(1), b(plusSecond), b(kindUndoCancel), b(plusSecond),
			b(kindUndoCancel), b(plusSecond), b(kindPause), b(plusSecond), b(kindPause), b(plusSecond),
			changeSeats(seats(6)), b(plusSecond), b(kindResume), b(plusSecond), cancel(0), b(plusSecond),
			b(kindResume), b(plusSecond), changePlan(2, 0, nil), b(plusSecond))),
		fuzzcorpus.S("time-runs-backwards", cat(b(0), active, b(plusHalfSecond), changeSeats(seats(7)), b(minusSecond),
			b(kindPause), b(minusSecond), b(kindPause), b(plusSecond))),
		fuzzcorpus.S("period-ended", cat(b(4), active, b(stay),
			changeSeats(seats(7)), b(plusMonth), changePlan(2, 0, nil), b(stay), cancel(1), b(stay),
			b(kindUndoCancel), b(stay), changePlan(2, 2, nil), b(stay), cancel(0), b(stay))),
		fuzzcorpus.S("yearly-leap-day", cat(b(1), create(7, seats(2), noTrial, 0), b(plusYear),
			changePlan(8, 1, nil), b(plusSecond), changeSeats(b(seatsMax)), b(plusSecond))),
		fuzzcorpus.S("big-time-jumps", cat(b(2), create(9, seats(1), days(200), 0), seconds(1<<31-1),
			changeSeats(seats(2)), seconds(-1<<31), b(kindPause), seconds(86400*365*50), cancel(0), b(stay))),
		fuzzcorpus.S("invalid-timings", cat(b(0), active, b(plusSecond), changePlan(2, 3, nil), b(plusSecond),
			changePlan(2, 4, seats(1)), b(plusSecond))),
		fuzzcorpus.S("other-zone-and-fraction", cat(b(3), create(8, seats(10), days(30), 0), b(plusHalfSecond),
			changePlan(7, 2, nil), b(plusHalfSecond), cancel(1), b(plusHalfSecond))),
	}
}
