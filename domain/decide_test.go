package domain

import (
	"cmp"
	"errors"
	"reflect"
	"testing"
	"time"
)

// t0 starts April, so a monthly period from it is 30 days.
var t0 = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

func catalogPlan(t testing.TB, id string) Plan {
	t.Helper()
	p, err := DefaultCatalog().Plan(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testPlan(id string, iv Interval, unitAmount int64) Plan {
	return Plan{ID: id, Name: id, Interval: iv, UnitAmount: unitAmount, Currency: "USD"}
}

// apply decides c at now and folds the events into s, failing on an error.
func apply(t testing.TB, s Subscription, c Command, now time.Time) (Subscription, []Event) {
	t.Helper()
	events, err := Decide(s, c, now)
	if err != nil {
		t.Fatalf("Decide(%#v) at %s: %v", c, now, err)
	}
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s, events
}

// created is a subscription created at t0 (trialDays nil: the plan default).
func created(t testing.TB, p Plan, seats int64, trialDays *int) Subscription {
	t.Helper()
	s, _ := apply(t, Subscription{}, Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: p, Seats: seats, TrialDays: trialDays}, t0)
	return s
}

// matchErr matches sentinels by identity and typed errors by type and fields.
func matchErr(got, want error) bool {
	if want == nil || got == nil {
		return got == want
	}
	if errors.Is(got, want) {
		return true
	}
	target := reflect.New(reflect.TypeOf(want))
	return errors.As(got, target.Interface()) && reflect.DeepEqual(target.Elem().Interface(), want)
}

func amounts(lines []ProrationLine) []int64 {
	var out []int64
	for _, l := range lines {
		out = append(out, l.Amount)
	}
	return out
}

func TestDecideCreate(t *testing.T) {
	starter, business, proYearly := catalogPlan(t, "starter_monthly"), catalogPlan(t, "business_monthly"), catalogPlan(t, "pro_yearly")
	at := func(t time.Time) *time.Time { return &t }
	tests := []struct {
		name      string
		plan      Plan
		trialDays *int
		now       time.Time
		want      SubscriptionCreated
	}{
		{
			name: "plan default trial", plan: starter,
			// Decide normalises to UTC whole seconds.
			now: t0.Add(999 * time.Millisecond).In(time.FixedZone("UTC-7", -7*3600)),
			want: SubscriptionCreated{
				Status: StatusTrialing, TrialEnd: at(date(2026, 4, 15)),
				BillingAnchor: date(2026, 4, 15), PeriodStart: t0, PeriodEnd: date(2026, 4, 15), CreatedAt: t0,
			},
		},
		{
			name: "requested trial overrides the default", plan: business, trialDays: new(7), now: t0,
			want: SubscriptionCreated{
				Status: StatusTrialing, TrialEnd: at(date(2026, 4, 8)),
				BillingAnchor: date(2026, 4, 8), PeriodStart: t0, PeriodEnd: date(2026, 4, 8), CreatedAt: t0,
			},
		},
		{
			name: "no trial", plan: starter, trialDays: new(0), now: t0,
			want: SubscriptionCreated{Status: StatusActive, BillingAnchor: t0, PeriodStart: t0, PeriodEnd: date(2026, 5, 1), CreatedAt: t0},
		},
		{
			name: "no trial, Jan 31 anchor", plan: starter, trialDays: new(0), now: time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC),
			want: SubscriptionCreated{
				Status: StatusActive, BillingAnchor: time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC),
				PeriodStart: time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC),
				CreatedAt: time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC),
			},
		},
		{
			name: "yearly, no trial", plan: proYearly, trialDays: new(0), now: date(2028, 2, 29),
			want: SubscriptionCreated{
				Status: StatusActive, BillingAnchor: date(2028, 2, 29), PeriodStart: date(2028, 2, 29),
				PeriodEnd: date(2029, 2, 28), CreatedAt: date(2028, 2, 29),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, events := apply(t, Subscription{}, Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: tt.plan, Seats: 3, TrialDays: tt.trialDays}, tt.now)
			want := tt.want
			want.SubscriptionID, want.CustomerID, want.Plan, want.Seats = "sub_1", "cus_1", tt.plan.Terms(), 3
			if len(events) != 1 || !reflect.DeepEqual(events[0], want) {
				t.Fatalf("got events %+v, want [%+v]", events, want)
			}
			wantMRR := tt.plan.MonthlyAmount(3)
			if want.Status == StatusTrialing {
				wantMRR = 0
			}
			if s.Status != want.Status || s.Version != 1 || s.UpdatedAt != want.CreatedAt || s.MRR() != wantMRR ||
				(want.TrialEnd != nil) != !s.TrialEnd.IsZero() {
				t.Errorf("got state %+v, want status %s, version 1, MRR %d", s, want.Status, wantMRR)
			}
		})
	}
}

// The example from the pricing spec: 1000/month → 2000/month exactly halfway
// through a 30-day period credits 500 and charges 1000.
func TestChangePlanHalfwayUpgrade(t *testing.T) {
	cheap, dear := testPlan("cheap", IntervalMonth, 1000), testPlan("dear", IntervalMonth, 2000)
	s := created(t, cheap, 1, new(0))
	halfway := date(2026, 4, 16)
	s, events := apply(t, s, ChangePlan{Plan: dear}, halfway)

	want := PlanChanged{
		FromPlan: cheap.Terms(), FromSeats: 1, Plan: dear.Terms(), Seats: 1, Direction: DirectionUpgrade,
		Proration: []ProrationLine{
			{Description: "Unused time on 1 × cheap", Amount: -500, Quantity: 1, UnitAmount: 1000, PeriodStart: halfway, PeriodEnd: date(2026, 5, 1), Proration: true, PlanID: "cheap"},
			{Description: "Remaining time on 1 × dear", Amount: 1000, Quantity: 1, UnitAmount: 2000, PeriodStart: halfway, PeriodEnd: date(2026, 5, 1), Proration: true, PlanID: "dear"},
		},
		BillingAnchor: t0, PeriodStart: t0, PeriodEnd: date(2026, 5, 1), ChangedAt: halfway,
	}
	if len(events) != 1 || !reflect.DeepEqual(events[0], want) {
		t.Fatalf("got %+v, want %+v", events, want)
	}
	if net := want.Proration[0].Amount + want.Proration[1].Amount; net != 500 {
		t.Errorf("net = %d, want 500", net)
	}
	if s.Plan.PlanID != "dear" || s.PeriodEnd != date(2026, 5, 1) || s.UpdatedAt != halfway || s.MRR() != 2000 {
		t.Errorf("got state %+v, want plan dear in the same period, MRR 2000", s)
	}
}

func TestChangePlanToAnotherInterval(t *testing.T) {
	monthly, yearly := testPlan("m", IntervalMonth, 3000), testPlan("y", IntervalYear, 60000)
	s := created(t, monthly, 2, new(0))
	now := date(2026, 4, 11) // 20 of 30 days left
	s, events := apply(t, s, ChangePlan{Plan: yearly}, now)

	e := events[0].(PlanChanged)
	if got, want := amounts(e.Proration), []int64{-4000, 120000}; !reflect.DeepEqual(got, want) {
		t.Errorf("got proration %v, want %v (credit 20/30 of the month, charge a full year)", got, want)
	}
	if l := e.Proration[1]; l.PeriodStart != now || l.PeriodEnd != date(2027, 4, 11) {
		t.Errorf("got charge period [%s, %s), want [%s, %s)", l.PeriodStart, l.PeriodEnd, now, date(2027, 4, 11))
	}
	if s.BillingAnchor != now || s.PeriodStart != now || s.PeriodEnd != date(2027, 4, 11) || s.Plan.Interval != IntervalYear {
		t.Errorf("got anchor %s period [%s, %s), want a new yearly period from %s", s.BillingAnchor, s.PeriodStart, s.PeriodEnd, now)
	}
}

func TestChangePlanTiming(t *testing.T) {
	pro := catalogPlan(t, "pro_monthly")
	active := created(t, pro, 2, new(0))
	trial := created(t, pro, 2, nil)
	now := date(2026, 4, 11) // 20 of 30 days left: prorations are ⅔ of a month

	tests := []struct {
		name    string
		from    Subscription
		cmd     ChangePlan
		want    string // event type
		dir     Direction
		amounts []int64
	}{
		{"upgrade is immediate", active, ChangePlan{Plan: catalogPlan(t, "business_monthly")}, "subscription.plan_changed", DirectionUpgrade, []int64{-6533, 13200}},
		{"lateral is immediate", active, ChangePlan{Plan: testPlan("pro_v2", IntervalMonth, 4900)}, "subscription.plan_changed", DirectionLateral, []int64{-6533, 6533}},
		{"more seats is an upgrade", active, ChangePlan{Plan: pro, Seats: 3}, "subscription.plan_changed", DirectionUpgrade, []int64{-6533, 9800}},
		{"yearly upgrade", active, ChangePlan{Plan: catalogPlan(t, "business_yearly")}, "subscription.plan_changed", DirectionUpgrade, []int64{-6533, 198000}},
		{"downgrade waits for period end", active, ChangePlan{Plan: catalogPlan(t, "starter_monthly")}, "subscription.plan_change_scheduled", "", nil},
		{"fewer seats waits for period end", active, ChangePlan{Plan: pro, Seats: 1}, "subscription.plan_change_scheduled", "", nil},
		{"yearly downgrade waits", active, ChangePlan{Plan: catalogPlan(t, "starter_yearly")}, "subscription.plan_change_scheduled", "", nil},
		{"immediate downgrade credits", active, ChangePlan{Plan: catalogPlan(t, "starter_monthly"), Timing: TimingImmediate}, "subscription.plan_changed", DirectionDowngrade, []int64{-6533, 2000}},
		{"upgrade at period end", active, ChangePlan{Plan: catalogPlan(t, "business_monthly"), Timing: TimingPeriodEnd}, "subscription.plan_change_scheduled", "", nil},
		{"trial upgrade is free", trial, ChangePlan{Plan: catalogPlan(t, "business_yearly")}, "subscription.plan_changed", DirectionUpgrade, nil},
		{"trial downgrade is immediate and free", trial, ChangePlan{Plan: catalogPlan(t, "starter_monthly")}, "subscription.plan_changed", DirectionDowngrade, nil},
		{"trial change at period end", trial, ChangePlan{Plan: catalogPlan(t, "starter_monthly"), Timing: TimingPeriodEnd}, "subscription.plan_change_scheduled", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, events := apply(t, tt.from, tt.cmd, now)
			if len(events) != 1 || events[0].EventType() != tt.want {
				t.Fatalf("got %+v, want one %s", events, tt.want)
			}
			switch e := events[0].(type) {
			case PlanChanged:
				if e.Direction != tt.dir || !reflect.DeepEqual(amounts(e.Proration), tt.amounts) {
					t.Errorf("got %s with proration %v, want %s with %v", e.Direction, amounts(e.Proration), tt.dir, tt.amounts)
				}
				if s.Plan.PlanID != tt.cmd.Plan.ID || s.ScheduledChange != nil {
					t.Errorf("got plan %s, scheduled %+v, want %s now", s.Plan.PlanID, s.ScheduledChange, tt.cmd.Plan.ID)
				}
				if tt.from.Status == StatusTrialing && (s.PeriodEnd != tt.from.TrialEnd || s.BillingAnchor != tt.from.TrialEnd) {
					t.Errorf("got period end %s, anchor %s, want the trial end %s kept", s.PeriodEnd, s.BillingAnchor, tt.from.TrialEnd)
				}
			case PlanChangeScheduled:
				want := &ScheduledChange{Plan: tt.cmd.Plan.Terms(), Seats: cmp.Or(tt.cmd.Seats, 2), EffectiveAt: tt.from.PeriodEnd}
				if !reflect.DeepEqual(s.ScheduledChange, want) || !reflect.DeepEqual(s.Plan, tt.from.Plan) {
					t.Errorf("got plan %s, scheduled %+v, want %+v at period end", s.Plan.PlanID, s.ScheduledChange, want)
				}
			}
		})
	}
}

func TestChangeSeats(t *testing.T) {
	pro := catalogPlan(t, "pro_monthly")
	now := date(2026, 4, 11) // 20 of 30 days left
	tests := []struct {
		name    string
		from    Subscription
		seats   int64
		amounts []int64
	}{
		{"add seats", created(t, pro, 2, new(0)), 5, []int64{-6533, 16333}},
		{"remove seats credits", created(t, pro, 2, new(0)), 1, []int64{-6533, 3267}},
		{"to max seats", created(t, pro, 2, new(0)), MaxSeats, []int64{-6533, 3_266_666_667}},
		{"trial is free", created(t, pro, 2, nil), 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, events := apply(t, tt.from, ChangeSeats{Seats: tt.seats}, now)
			e, ok := events[0].(SeatsChanged)
			if len(events) != 1 || !ok || e.FromSeats != 2 || e.Seats != tt.seats || !reflect.DeepEqual(amounts(e.Proration), tt.amounts) {
				t.Fatalf("got %+v, want SeatsChanged 2 → %d with proration %v", events, tt.seats, tt.amounts)
			}
			if s.Seats != tt.seats || s.UpdatedAt != now || s.PeriodEnd != tt.from.PeriodEnd {
				t.Errorf("got state %+v, want %d seats in the same period", s, tt.seats)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	active := created(t, catalogPlan(t, "pro_monthly"), 2, new(0))
	now := date(2026, 4, 11)

	s, events := apply(t, active, Cancel{AtPeriodEnd: true}, now)
	if want := (CancellationScheduled{CancelAt: date(2026, 5, 1), RequestedAt: now}); !reflect.DeepEqual(events, []Event{want}) {
		t.Fatalf("got %+v, want %+v", events, want)
	}
	if !s.CancelAtPeriodEnd || s.Status != StatusActive || s.MRR() != 9800 {
		t.Fatalf("got %+v, want active with a pending cancellation, still counted in MRR", s)
	}

	undone, events := apply(t, s, UndoCancel{}, now.Add(time.Hour))
	if !reflect.DeepEqual(events, []Event{CancellationUndone{UndoneAt: now.Add(time.Hour)}}) || undone.CancelAtPeriodEnd {
		t.Errorf("got %+v and CancelAtPeriodEnd %t, want it undone", events, undone.CancelAtPeriodEnd)
	}

	canceled, events := apply(t, s, Cancel{}, now.Add(2*time.Hour))
	want := Canceled{CanceledAt: now.Add(2 * time.Hour), Reason: CancelReasonRequested}
	if !reflect.DeepEqual(events, []Event{want}) {
		t.Fatalf("got %+v, want %+v", events, want)
	}
	if canceled.Status != StatusCanceled || canceled.CanceledAt != want.CanceledAt || canceled.CancelAtPeriodEnd || canceled.MRR() != 0 {
		t.Errorf("got %+v, want canceled now with nothing pending", canceled)
	}
}

func TestPauseResume(t *testing.T) {
	active := created(t, catalogPlan(t, "pro_monthly"), 2, new(0))
	paused, events := apply(t, active, Pause{}, date(2026, 4, 5))
	if !reflect.DeepEqual(events, []Event{Paused{PausedAt: date(2026, 4, 5)}}) ||
		paused.Status != StatusPaused || paused.PausedAt != date(2026, 4, 5) || paused.MRR() != 0 {
		t.Fatalf("got %+v, state %+v, want paused on Apr 5 with no MRR", events, paused)
	}
	// Resuming after the period ended is allowed: it does not depend on it.
	resumed, events := apply(t, paused, Resume{}, date(2026, 6, 1))
	if !reflect.DeepEqual(events, []Event{Resumed{ResumedAt: date(2026, 6, 1)}}) ||
		resumed.Status != StatusActive || !resumed.PausedAt.IsZero() || resumed.MRR() != 9800 {
		t.Errorf("got %+v, state %+v, want active again", events, resumed)
	}
}

func TestScheduledChangeLifecycle(t *testing.T) {
	active := created(t, catalogPlan(t, "pro_monthly"), 2, new(0))
	now := date(2026, 4, 11)
	s, _ := apply(t, active, ChangePlan{Plan: catalogPlan(t, "starter_monthly")}, now)
	if s.ScheduledChange == nil || s.ScheduledChange.Plan.PlanID != "starter_monthly" || s.ScheduledChange.EffectiveAt != date(2026, 5, 1) {
		t.Fatalf("got scheduled %+v, want starter_monthly at May 1", s.ScheduledChange)
	}
	replaced, _ := apply(t, s, ChangePlan{Plan: catalogPlan(t, "pro_monthly"), Seats: 1}, now)
	if sc := replaced.ScheduledChange; sc == nil || sc.Plan.PlanID != "pro_monthly" || sc.Seats != 1 {
		t.Errorf("got scheduled %+v, want it replaced by 1 × pro_monthly", sc)
	}
	for _, c := range []Command{
		ChangePlan{Plan: catalogPlan(t, "business_monthly")},
		Cancel{AtPeriodEnd: true},
		Cancel{},
	} {
		if got, _ := apply(t, s, c, now); got.ScheduledChange != nil {
			t.Errorf("after %#v: got scheduled %+v, want it cleared", c, got.ScheduledChange)
		}
	}
	// Seat changes leave the scheduled change as requested.
	if got, _ := apply(t, s, ChangeSeats{Seats: 4}, now); got.ScheduledChange == nil || got.ScheduledChange.Seats != 2 {
		t.Errorf("after ChangeSeats: got scheduled %+v, want it kept", got.ScheduledChange)
	}
}

func TestDecideErrors(t *testing.T) {
	pro, starter := catalogPlan(t, "pro_monthly"), catalogPlan(t, "starter_monthly")
	active := created(t, pro, 2, new(0)) // period [Apr 1, May 1)
	trial := created(t, pro, 2, nil)
	canceled, _ := apply(t, active, Cancel{}, t0)
	paused, _ := apply(t, active, Pause{}, t0)
	pastDue := active
	pastDue.Status = StatusPastDue
	cancelPending, _ := apply(t, active, Cancel{AtPeriodEnd: true}, t0)
	downgradePending, _ := apply(t, active, ChangePlan{Plan: starter}, t0)
	create := Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: pro, Seats: 1}
	badPlan := pro
	badPlan.Currency = "usd"
	badTrialPlan := pro
	badTrialPlan.TrialDays = 731
	mid, periodEnd := date(2026, 4, 11), date(2026, 5, 1)
	transition := func(s Status, action string) error { return &InvalidTransitionError{Status: s, Action: action} }
	withCreate := func(f func(*Create)) Create { c := create; f(&c); return c }

	tests := []struct {
		name string
		s    Subscription
		cmd  Command
		now  time.Time
		want error
	}{
		{"create on existing", active, create, mid, ErrSubscriptionExists},
		{"create on canceled", canceled, create, mid, ErrSubscriptionExists},
		{"create without subscription id", Subscription{}, withCreate(func(c *Create) { c.SubscriptionID = "" }), mid, &InvalidSubscriptionIDError{}},
		{"create without customer", Subscription{}, withCreate(func(c *Create) { c.CustomerID = " " }), mid, &InvalidCustomerError{CustomerID: " "}},
		{"create with invalid plan", Subscription{}, withCreate(func(c *Create) { c.Plan = badPlan }), mid, &InvalidPlanError{PlanID: "pro_monthly", Reason: `currency "usd" is not 3 upper-case letters`}},
		{"create with invalid plan trial", Subscription{}, withCreate(func(c *Create) { c.Plan = badTrialPlan }), mid, &InvalidPlanError{PlanID: "pro_monthly", Reason: "trial_days 731 is outside 0..730"}},
		{"create with 0 seats", Subscription{}, withCreate(func(c *Create) { c.Seats = 0 }), mid, &InvalidSeatsError{Seats: 0}},
		{"create with too many seats", Subscription{}, withCreate(func(c *Create) { c.Seats = MaxSeats + 1 }), mid, &InvalidSeatsError{Seats: MaxSeats + 1}},
		{"create with negative trial", Subscription{}, withCreate(func(c *Create) { c.TrialDays = new(-1) }), mid, &InvalidTrialError{Days: -1}},
		{"create with too long trial", Subscription{}, withCreate(func(c *Create) { c.TrialDays = new(731) }), mid, &InvalidTrialError{Days: 731}},

		{"change plan, not found", Subscription{}, ChangePlan{Plan: pro}, mid, ErrSubscriptionNotFound},
		{"change plan, canceled", canceled, ChangePlan{Plan: starter}, mid, ErrSubscriptionCanceled},
		{"change plan, past due", pastDue, ChangePlan{Plan: starter}, mid, transition(StatusPastDue, "change plan")},
		{"change plan, paused", paused, ChangePlan{Plan: starter}, mid, transition(StatusPaused, "change plan")},
		{"change plan, invalid plan", active, ChangePlan{Plan: Plan{}}, mid, &InvalidPlanError{Reason: "id must match ^[a-z0-9][a-z0-9_-]{0,63}$"}},
		{"change plan, negative seats", active, ChangePlan{Plan: starter, Seats: -1}, mid, &InvalidSeatsError{Seats: -1}},
		{"change plan, too many seats", active, ChangePlan{Plan: starter, Seats: MaxSeats + 1}, mid, &InvalidSeatsError{Seats: MaxSeats + 1}},
		{"change plan, unknown timing", active, ChangePlan{Plan: starter, Timing: "tomorrow"}, mid, &InvalidTimingError{Timing: "tomorrow"}},
		{"change plan, other currency", active, ChangePlan{Plan: catalogPlan(t, "pro_monthly_eur")}, mid, &CurrencyMismatchError{From: "USD", To: "EUR"}},
		{"change plan, same plan and seats", active, ChangePlan{Plan: pro}, mid, ErrNoChange},
		{"change plan, same plan and explicit seats", active, ChangePlan{Plan: pro, Seats: 2}, mid, ErrNoChange},
		{"change plan, same change already scheduled", downgradePending, ChangePlan{Plan: starter}, mid, ErrNoChange},
		{"change plan at period end, cancellation pending", cancelPending, ChangePlan{Plan: starter}, mid, ErrCancellationAlreadyScheduled},
		{"change plan after the period ended", active, ChangePlan{Plan: starter, Timing: TimingImmediate}, periodEnd, &PeriodEndedError{PeriodEnd: periodEnd}},
		{"change plan after the trial ended", trial, ChangePlan{Plan: starter}, trial.TrialEnd, &PeriodEndedError{PeriodEnd: trial.TrialEnd}},
		{"change plan before the last event", active, ChangePlan{Plan: starter}, t0.Add(-time.Second), &TimeOrderError{At: t0.Add(-time.Second), Last: t0}},

		{"change seats, not found", Subscription{}, ChangeSeats{Seats: 3}, mid, ErrSubscriptionNotFound},
		{"change seats, canceled", canceled, ChangeSeats{Seats: 3}, mid, ErrSubscriptionCanceled},
		{"change seats, past due", pastDue, ChangeSeats{Seats: 3}, mid, transition(StatusPastDue, "change seats")},
		{"change seats, paused", paused, ChangeSeats{Seats: 3}, mid, transition(StatusPaused, "change seats")},
		{"change seats to 0", active, ChangeSeats{Seats: 0}, mid, &InvalidSeatsError{Seats: 0}},
		{"change seats above max", active, ChangeSeats{Seats: MaxSeats + 1}, mid, &InvalidSeatsError{Seats: MaxSeats + 1}},
		{"change seats to the same", active, ChangeSeats{Seats: 2}, mid, ErrNoChange},
		{"change seats after the period ended", active, ChangeSeats{Seats: 3}, periodEnd.Add(time.Hour), &PeriodEndedError{PeriodEnd: periodEnd}},

		{"cancel, not found", Subscription{}, Cancel{}, mid, ErrSubscriptionNotFound},
		{"cancel, canceled", canceled, Cancel{}, mid, ErrSubscriptionCanceled},
		{"cancel at period end twice", cancelPending, Cancel{AtPeriodEnd: true}, mid, ErrCancellationAlreadyScheduled},
		{"cancel at an ended period's end", active, Cancel{AtPeriodEnd: true}, periodEnd, &PeriodEndedError{PeriodEnd: periodEnd}},
		{"cancel before the last event", paused, Cancel{}, t0.Add(-time.Hour), &TimeOrderError{At: t0.Add(-time.Hour), Last: t0}},

		{"undo cancel, not found", Subscription{}, UndoCancel{}, mid, ErrSubscriptionNotFound},
		{"undo cancel, canceled", canceled, UndoCancel{}, mid, ErrSubscriptionCanceled},
		{"undo cancel, none pending", active, UndoCancel{}, mid, ErrCancellationNotScheduled},
		{"undo cancel after it took effect", cancelPending, UndoCancel{}, periodEnd, &PeriodEndedError{PeriodEnd: periodEnd}},

		{"pause, not found", Subscription{}, Pause{}, mid, ErrSubscriptionNotFound},
		{"pause, canceled", canceled, Pause{}, mid, ErrSubscriptionCanceled},
		{"pause, trialing", trial, Pause{}, mid, transition(StatusTrialing, "pause")},
		{"pause, paused", paused, Pause{}, mid, transition(StatusPaused, "pause")},
		{"pause, past due", pastDue, Pause{}, mid, transition(StatusPastDue, "pause")},

		{"resume, not found", Subscription{}, Resume{}, mid, ErrSubscriptionNotFound},
		{"resume, canceled", canceled, Resume{}, mid, ErrSubscriptionCanceled},
		{"resume, active", active, Resume{}, mid, transition(StatusActive, "resume")},

		{"nil command", active, nil, mid, ErrUnknownCommand},
		{"pointer command", active, &Pause{}, mid, ErrUnknownCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := Decide(tt.s, tt.cmd, tt.now)
			if !matchErr(err, tt.want) || events != nil {
				t.Errorf("Decide = %v, %v; want no events and %#v", events, err, tt.want)
			}
		})
	}
}

func TestValidateBounds(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"seats 1", ValidateSeats(1), nil},
		{"seats max", ValidateSeats(MaxSeats), nil},
		{"seats 0", ValidateSeats(0), &InvalidSeatsError{Seats: 0}},
		{"seats max+1", ValidateSeats(MaxSeats + 1), &InvalidSeatsError{Seats: MaxSeats + 1}},
		{"trial 0", ValidateTrialDays(0), nil},
		{"trial max", ValidateTrialDays(MaxTrialDays), nil},
		{"trial -1", ValidateTrialDays(-1), &InvalidTrialError{Days: -1}},
		{"trial max+1", ValidateTrialDays(MaxTrialDays + 1), &InvalidTrialError{Days: MaxTrialDays + 1}},
	} {
		if !matchErr(tt.err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.err, tt.want)
		}
	}
}

// TestStatusTransitions is the status × command table: which commands each
// status allows, and the error for the rest.
func TestStatusTransitions(t *testing.T) {
	base := created(t, catalogPlan(t, "pro_monthly"), 2, new(0))
	base.CancelAtPeriodEnd = true // so UndoCancel has something to undo
	commands := []struct {
		name   string
		cmd    Command
		action string
	}{
		{"create", Create{SubscriptionID: "sub_2", CustomerID: "cus_1", Plan: catalogPlan(t, "pro_monthly"), Seats: 1}, ""},
		{"change plan", ChangePlan{Plan: catalogPlan(t, "business_monthly")}, "change plan"},
		{"change seats", ChangeSeats{Seats: 5}, "change seats"},
		{"cancel", Cancel{}, "cancel"},
		{"undo cancel", UndoCancel{}, "undo cancel"},
		{"pause", Pause{}, "pause"},
		{"resume", Resume{}, "resume"},
	}
	const ok, no = "ok", "transition"
	table := map[Status][]string{ // in the order of commands
		StatusTrialing: {"exists", ok, ok, ok, ok, no, no},
		StatusActive:   {"exists", ok, ok, ok, ok, ok, no},
		StatusPastDue:  {"exists", no, no, ok, ok, no, no},
		StatusPaused:   {"exists", no, no, ok, ok, no, ok},
		StatusCanceled: {"exists", "canceled", "canceled", "canceled", "canceled", "canceled", "canceled"},
	}
	for status, outcomes := range table {
		for i, c := range commands {
			s := base
			s.Status = status
			var want error
			switch outcomes[i] {
			case "exists":
				want = ErrSubscriptionExists
			case "canceled":
				want = ErrSubscriptionCanceled
			case no:
				want = &InvalidTransitionError{Status: status, Action: c.action}
			}
			if _, err := Decide(s, c.cmd, date(2026, 4, 11)); !matchErr(err, want) {
				t.Errorf("%s while %s: got %v, want %v", c.name, status, err, want)
			}
		}
	}
}
