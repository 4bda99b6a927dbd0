package domain

import (
	"errors"
	"fmt"
	"time"
)

// TrialReminder is how long before a trial ends subscription.trial_will_end
// is recorded.
const TrialReminder = 3 * 24 * time.Hour

// Actions named in *InvalidTransitionError by the billing cycle's commands.
const (
	actionRenew         = "renew"
	actionNotifyTrial   = "send the trial reminder"
	actionMarkPastDue   = "mark past due"
	actionRecover       = "recover payment"
	actionEndDunning    = "end dunning"
	actionChangePayment = "change the payment method"
)

// AlreadyRenewedError refuses a renewal of a period that is not the
// subscription's current one: it was renewed already.
type AlreadyRenewedError struct{ PeriodEnd, Current time.Time }

func (e *AlreadyRenewedError) Error() string {
	return fmt.Sprintf("the period ending %s was already renewed (the current one ends %s)",
		e.PeriodEnd.Format(time.RFC3339), e.Current.Format(time.RFC3339))
}

// NotDueError refuses a scheduled action before its time.
type NotDueError struct {
	Action string
	DueAt  time.Time
}

func (e *NotDueError) Error() string {
	return fmt.Sprintf("cannot %s before %s", e.Action, e.DueAt.Format(time.RFC3339))
}

// ErrPaymentMethodRequired refuses an empty payment method.
var ErrPaymentMethodRequired = errors.New("a payment method is required")

// ErrInvoiceIDRequired refuses a renewal that bills the new period but names
// no invoice for it.
var ErrInvoiceIDRequired = errors.New("renew: the new period's invoice id is required")

func decideRenew(s Subscription, c Renew, now time.Time) ([]Event, error) {
	if err := s.require(actionRenew, now, StatusTrialing, StatusActive, StatusPastDue, StatusPaused); err != nil {
		return nil, err
	}
	if !c.PeriodEnd.Equal(s.PeriodEnd) {
		return nil, &AlreadyRenewedError{PeriodEnd: c.PeriodEnd, Current: s.PeriodEnd}
	}
	if now.Before(s.PeriodEnd) {
		return nil, &NotDueError{Action: actionRenew, DueAt: s.PeriodEnd}
	}
	if s.CancelAtPeriodEnd {
		return []Event{Canceled{CanceledAt: now, Reason: CancelReasonRequested}}, nil
	}
	if s.Status == StatusTrialing && s.PaymentMethod == "" && c.CancelTrialWithoutPaymentMethod {
		return []Event{Canceled{CanceledAt: now, Reason: CancelReasonTrialEnded}}, nil
	}
	plan, seats, anchor := s.Plan, s.Seats, s.BillingAnchor
	if sc := s.ScheduledChange; sc != nil {
		plan, seats = sc.Plan, sc.Seats
		if plan.Interval != s.Plan.Interval {
			anchor = s.PeriodEnd // periods of another length start their own series
		}
	}
	e := Renewed{Plan: plan, Seats: seats, BillingAnchor: anchor, PeriodStart: s.PeriodEnd,
		PeriodEnd: nextBoundary(anchor, plan.Interval, s.PeriodEnd), RenewedAt: now}
	// A paused subscription's periods go on, unbilled.
	if s.Status != StatusPaused {
		if c.InvoiceID == "" {
			return nil, ErrInvoiceIDRequired
		}
		e.InvoiceID = c.InvoiceID
	}
	return []Event{e}, nil
}

// nextBoundary is the first period boundary of anchor's series after t.
func nextBoundary(anchor time.Time, iv Interval, t time.Time) time.Time {
	months := (t.Year()-anchor.Year())*12 + int(t.Month()-anchor.Month())
	n := max(months/iv.months()-1, 1)
	for !AddInterval(anchor, iv, n).After(t) {
		n++
	}
	return AddInterval(anchor, iv, n)
}

// TrialReminderDue is when subscription.trial_will_end is due, if it is.
func (s Subscription) TrialReminderDue() (time.Time, bool) {
	if s.Status != StatusTrialing || s.TrialWillEndSent || s.TrialEnd.IsZero() {
		return time.Time{}, false
	}
	return s.TrialEnd.Add(-TrialReminder), true
}

// RenewalDue is when the current period must be renewed, if it must.
func (s Subscription) RenewalDue() (time.Time, bool) {
	switch s.Status {
	case StatusTrialing, StatusActive, StatusPastDue, StatusPaused:
		return s.PeriodEnd, s.Exists()
	}
	return time.Time{}, false
}

func decideNotifyTrialWillEnd(s Subscription, now time.Time) ([]Event, error) {
	if err := s.require(actionNotifyTrial, now, StatusTrialing); err != nil {
		return nil, err
	}
	due, ok := s.TrialReminderDue()
	switch {
	case !ok:
		return nil, ErrNoChange
	case now.Before(due):
		return nil, &NotDueError{Action: actionNotifyTrial, DueAt: due}
	}
	return []Event{TrialWillEnd{TrialEnd: s.TrialEnd, NotifiedAt: now}}, nil
}

func decideMarkPastDue(s Subscription, c MarkPastDue, now time.Time) ([]Event, error) {
	if err := s.require(actionMarkPastDue, now, StatusActive, StatusPastDue); err != nil {
		return nil, err
	}
	if s.Status == StatusPastDue {
		return nil, ErrNoChange
	}
	return []Event{PastDue{InvoiceID: c.InvoiceID, At: now}}, nil
}

func decideRecoverPayment(s Subscription, c RecoverPayment, now time.Time) ([]Event, error) {
	if err := s.require(actionRecover, now, StatusActive, StatusPastDue, StatusUnpaid, StatusPaused, StatusTrialing); err != nil {
		return nil, err
	}
	if s.Status != StatusPastDue && s.Status != StatusUnpaid {
		return nil, ErrNoChange
	}
	return []Event{PaymentRecovered{InvoiceID: c.InvoiceID, At: now}}, nil
}

func decideEndDunning(s Subscription, c EndDunning, now time.Time) ([]Event, error) {
	if err := s.require(actionEndDunning, now, StatusActive, StatusPastDue, StatusUnpaid, StatusPaused, StatusTrialing); err != nil {
		return nil, err
	}
	switch {
	case s.Status != StatusPastDue:
		return nil, ErrNoChange // paid meanwhile, or dunning already ended
	case c.MarkUnpaid:
		return []Event{MarkedUnpaid{InvoiceID: c.InvoiceID, At: now}}, nil
	}
	return []Event{Canceled{CanceledAt: now, Reason: CancelReasonNonpayment}}, nil
}

func decideChangePaymentMethod(s Subscription, c ChangePaymentMethod, now time.Time) ([]Event, error) {
	if err := s.require(actionChangePayment, now, StatusTrialing, StatusActive, StatusPastDue, StatusUnpaid, StatusPaused); err != nil {
		return nil, err
	}
	switch c.PaymentMethod {
	case "":
		return nil, ErrPaymentMethodRequired
	case s.PaymentMethod:
		return nil, ErrNoChange
	}
	return []Event{PaymentMethodChanged{PaymentMethod: c.PaymentMethod, ChangedAt: now}}, nil
}

// decideRecordUpgradeFailed accepts any existing subscription, canceled or
// not: a compensation must always be recordable. It is dated no earlier than
// the subscription's last event.
func decideRecordUpgradeFailed(s Subscription, c RecordUpgradeFailed, now time.Time) ([]Event, error) {
	if !s.Exists() {
		return nil, ErrSubscriptionNotFound
	}
	if now.Before(s.UpdatedAt) {
		now = s.UpdatedAt
	}
	return []Event{UpgradeFailed{UpgradeID: c.UpgradeID, Plan: c.Plan, Seats: c.Seats, Reason: c.Reason,
		DeclineCode: c.DeclineCode, FailedAt: now}}, nil
}
