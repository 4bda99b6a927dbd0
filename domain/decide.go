package domain

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Actions named in *InvalidTransitionError.
const (
	actionChangePlan  = "change plan"
	actionChangeSeats = "change seats"
	actionCancel      = "cancel"
	actionUndoCancel  = "undo cancel"
	actionPause       = "pause"
	actionResume      = "resume"
)

// Decide validates command c against state s at time now (normalised to UTC
// whole seconds) and returns the events that record its effect, or an error
// from errors.go and no events.
func Decide(s Subscription, c Command, now time.Time) ([]Event, error) {
	// Events are the persistent record and must compare equal after a JSON
	// round trip, which drops the location and the monotonic reading;
	// whole seconds are also the unit proration is exact to.
	now = now.UTC().Truncate(time.Second)
	switch c := c.(type) {
	case Create:
		return decideCreate(s, c, now)
	case ChangePlan:
		return decideChangePlan(s, c, now)
	case ChangeSeats:
		return decideChangeSeats(s, c, now)
	case Cancel:
		return decideCancel(s, c, now)
	case UndoCancel:
		return decideUndoCancel(s, now)
	case Pause:
		if err := s.require(actionPause, now, StatusActive); err != nil {
			return nil, err
		}
		return []Event{Paused{PausedAt: now}}, nil
	case Resume:
		if err := s.require(actionResume, now, StatusPaused); err != nil {
			return nil, err
		}
		return []Event{Resumed{ResumedAt: now}}, nil
	case ChangePaymentMethod:
		return decideChangePaymentMethod(s, c, now)
	case Renew:
		return decideRenew(s, c, now)
	case NotifyTrialWillEnd:
		return decideNotifyTrialWillEnd(s, now)
	case MarkPastDue:
		return decideMarkPastDue(s, c, now)
	case RecoverPayment:
		return decideRecoverPayment(s, c, now)
	case EndDunning:
		return decideEndDunning(s, c, now)
	case RecordUpgradeFailed:
		return decideRecordUpgradeFailed(s, c, now)
	}
	return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, c)
}

func decideCreate(s Subscription, c Create, now time.Time) ([]Event, error) {
	if s.Exists() {
		return nil, ErrSubscriptionExists
	}
	if strings.TrimSpace(c.SubscriptionID) == "" {
		return nil, &InvalidSubscriptionIDError{SubscriptionID: c.SubscriptionID}
	}
	if strings.TrimSpace(c.CustomerID) == "" {
		return nil, &InvalidCustomerError{CustomerID: c.CustomerID}
	}
	if err := c.Plan.validate(); err != nil {
		return nil, err
	}
	if err := ValidateSeats(c.Seats); err != nil {
		return nil, err
	}
	days := c.Plan.TrialDays
	if c.TrialDays != nil {
		days = *c.TrialDays
	}
	if err := ValidateTrialDays(days); err != nil {
		return nil, err
	}
	e := SubscriptionCreated{
		SubscriptionID: c.SubscriptionID,
		CustomerID:     c.CustomerID,
		Plan:           c.Plan.Terms(),
		Seats:          c.Seats,
		Status:         StatusActive,
		BillingAnchor:  now,
		PeriodStart:    now,
		PeriodEnd:      AddInterval(now, c.Plan.Interval, 1),
		PaymentMethod:  c.PaymentMethod,
		CreatedAt:      now,
	}
	if days > 0 {
		// Paid periods start where the trial ends, so that is the anchor.
		end := now.AddDate(0, 0, days)
		e.Status, e.TrialEnd, e.BillingAnchor, e.PeriodEnd = StatusTrialing, &end, end, end
	}
	return []Event{e}, nil
}

func decideChangePlan(s Subscription, c ChangePlan, now time.Time) ([]Event, error) {
	if err := s.require(actionChangePlan, now, StatusTrialing, StatusActive); err != nil {
		return nil, err
	}
	if err := c.Plan.validate(); err != nil {
		return nil, err
	}
	seats := cmp.Or(c.Seats, s.Seats)
	if err := ValidateSeats(seats); err != nil {
		return nil, err
	}
	if c.Timing != TimingDefault && c.Timing != TimingImmediate && c.Timing != TimingPeriodEnd {
		return nil, &InvalidTimingError{Timing: c.Timing}
	}
	if c.Plan.Currency != s.Plan.Currency {
		return nil, &CurrencyMismatchError{From: s.Plan.Currency, To: c.Plan.Currency}
	}
	// Plans are compared by id: re-pricing a subscription onto the catalog's
	// current terms for the same plan is not a customer's plan change.
	if c.Plan.ID == s.Plan.PlanID && seats == s.Seats {
		return nil, ErrNoChange
	}
	if err := s.requireOpenPeriod(now); err != nil {
		return nil, err
	}
	to := c.Plan.Terms()
	dir := direction(s.Plan.MonthlyAmount(s.Seats), to.MonthlyAmount(seats))
	timing := c.Timing
	if timing == TimingDefault {
		// A downgrade waits for the end of a period already paid for; a
		// trial is free, so nothing is lost by switching at once.
		timing = TimingImmediate
		if dir == DirectionDowngrade && s.Status == StatusActive {
			timing = TimingPeriodEnd
		}
	}

	if timing == TimingPeriodEnd {
		if s.CancelAtPeriodEnd {
			return nil, ErrCancellationAlreadyScheduled
		}
		if sc := s.ScheduledChange; sc != nil && sc.Plan.PlanID == to.PlanID && sc.Seats == seats {
			return nil, ErrNoChange
		}
		return []Event{PlanChangeScheduled{Plan: to, Seats: seats, EffectiveAt: s.PeriodEnd, ScheduledAt: now}}, nil
	}

	e := PlanChanged{
		FromPlan:      s.Plan,
		FromSeats:     s.Seats,
		Plan:          to,
		Seats:         seats,
		Direction:     dir,
		BillingAnchor: s.BillingAnchor,
		PeriodStart:   s.PeriodStart,
		PeriodEnd:     s.PeriodEnd,
		ChangedAt:     now,
	}
	// A trial keeps its period and is free, so only a paid period prorates.
	if s.Status == StatusActive {
		if to.Interval != s.Plan.Interval {
			// Periods of different lengths cannot share boundaries, so the
			// new plan starts a full period of its own now.
			e.BillingAnchor, e.PeriodStart, e.PeriodEnd = now, now, AddInterval(now, to.Interval, 1)
		}
		e.Proration = []ProrationLine{
			creditLine(s.Plan, s.Seats, now, s.PeriodStart, s.PeriodEnd),
			chargeLine(to, seats, now, e.PeriodStart, e.PeriodEnd),
		}
	}
	return []Event{e}, nil
}

func decideChangeSeats(s Subscription, c ChangeSeats, now time.Time) ([]Event, error) {
	if err := s.require(actionChangeSeats, now, StatusTrialing, StatusActive); err != nil {
		return nil, err
	}
	if err := ValidateSeats(c.Seats); err != nil {
		return nil, err
	}
	if c.Seats == s.Seats {
		return nil, ErrNoChange
	}
	if err := s.requireOpenPeriod(now); err != nil {
		return nil, err
	}
	e := SeatsChanged{FromSeats: s.Seats, Seats: c.Seats, ChangedAt: now}
	if s.Status == StatusActive {
		e.Proration = []ProrationLine{
			creditLine(s.Plan, s.Seats, now, s.PeriodStart, s.PeriodEnd),
			chargeLine(s.Plan, c.Seats, now, s.PeriodStart, s.PeriodEnd),
		}
	}
	return []Event{e}, nil
}

func decideCancel(s Subscription, c Cancel, now time.Time) ([]Event, error) {
	if err := s.require(actionCancel, now, StatusTrialing, StatusActive, StatusPastDue, StatusPaused, StatusUnpaid); err != nil {
		return nil, err
	}
	if !c.AtPeriodEnd {
		return []Event{Canceled{CanceledAt: now, Reason: CancelReasonRequested}}, nil
	}
	if s.CancelAtPeriodEnd {
		return nil, ErrCancellationAlreadyScheduled
	}
	if err := s.requireOpenPeriod(now); err != nil {
		return nil, err
	}
	return []Event{CancellationScheduled{CancelAt: s.PeriodEnd, RequestedAt: now}}, nil
}

func decideUndoCancel(s Subscription, now time.Time) ([]Event, error) {
	if err := s.require(actionUndoCancel, now, StatusTrialing, StatusActive, StatusPastDue, StatusPaused); err != nil {
		return nil, err
	}
	if !s.CancelAtPeriodEnd {
		return nil, ErrCancellationNotScheduled
	}
	// Past the period end the cancellation has, in effect, already happened.
	if err := s.requireOpenPeriod(now); err != nil {
		return nil, err
	}
	return []Event{CancellationUndone{UndoneAt: now}}, nil
}

// require guards every command but Create: the subscription must exist, not
// be canceled, allow action in its status, and now must not precede its last
// event.
func (s Subscription) require(action string, now time.Time, allowed ...Status) error {
	switch {
	case !s.Exists():
		return ErrSubscriptionNotFound
	case s.Status == StatusCanceled:
		return ErrSubscriptionCanceled
	case !slices.Contains(allowed, s.Status):
		return &InvalidTransitionError{Status: s.Status, Action: action}
	case now.Before(s.UpdatedAt):
		return &TimeOrderError{At: now, Last: s.UpdatedAt}
	}
	return nil
}

// requireOpenPeriod refuses to prorate against, or schedule for the end of, a
// period that has already ended: its renewal must be recorded first.
func (s Subscription) requireOpenPeriod(now time.Time) error {
	if !now.Before(s.PeriodEnd) {
		return &PeriodEndedError{PeriodEnd: s.PeriodEnd}
	}
	return nil
}

func direction(fromMonthly, toMonthly int64) Direction {
	switch {
	case toMonthly > fromMonthly:
		return DirectionUpgrade
	case toMonthly < fromMonthly:
		return DirectionDowngrade
	}
	return DirectionLateral
}
