package domain

import (
	"errors"
	"fmt"
	"time"
)

var (
	ErrSubscriptionNotFound         = errors.New("subscription not found")
	ErrSubscriptionExists           = errors.New("subscription already exists")
	ErrSubscriptionCanceled         = errors.New("subscription is canceled")
	ErrNoChange                     = errors.New("change would leave the subscription unchanged")
	ErrCancellationNotScheduled     = errors.New("no cancellation is scheduled")
	ErrCancellationAlreadyScheduled = errors.New("cancellation is already scheduled")
	ErrInvalidCatalog               = errors.New("invalid catalog")
	ErrUnknownCommand               = errors.New("unknown command")

	errTrailingData = errors.New("unexpected data after json value")
)

// InvalidSeatsError reports a seat count outside 1..MaxSeats.
type InvalidSeatsError struct{ Seats int64 }

func (e *InvalidSeatsError) Error() string {
	return fmt.Sprintf("invalid seats %d: must be between 1 and %d", e.Seats, MaxSeats)
}

// InvalidTrialError reports a requested trial outside 0..MaxTrialDays days.
type InvalidTrialError struct{ Days int }

func (e *InvalidTrialError) Error() string {
	return fmt.Sprintf("invalid trial of %d days: must be between 0 and %d", e.Days, MaxTrialDays)
}

// InvalidCustomerError reports an empty customer id.
type InvalidCustomerError struct{ CustomerID string }

func (e *InvalidCustomerError) Error() string {
	return fmt.Sprintf("invalid customer id %q", e.CustomerID)
}

// InvalidSubscriptionIDError reports an empty subscription id.
type InvalidSubscriptionIDError struct{ SubscriptionID string }

func (e *InvalidSubscriptionIDError) Error() string {
	return fmt.Sprintf("invalid subscription id %q", e.SubscriptionID)
}

// UnknownPlanError reports a plan id the catalog does not contain.
type UnknownPlanError struct{ PlanID string }

func (e *UnknownPlanError) Error() string { return fmt.Sprintf("unknown plan %q", e.PlanID) }

// InvalidPlanError reports a plan that breaks a catalog rule.
type InvalidPlanError struct{ PlanID, Reason string }

func (e *InvalidPlanError) Error() string {
	return fmt.Sprintf("invalid plan %q: %s", e.PlanID, e.Reason)
}

// CurrencyMismatchError reports a plan change that would switch currency,
// which would leave prorations and invoices in two currencies.
type CurrencyMismatchError struct{ From, To string }

func (e *CurrencyMismatchError) Error() string {
	return fmt.Sprintf("cannot change currency from %s to %s", e.From, e.To)
}

// InvalidTimingError reports a Timing value that is not one of the constants.
type InvalidTimingError struct{ Timing Timing }

func (e *InvalidTimingError) Error() string { return fmt.Sprintf("invalid timing %q", e.Timing) }

// InvalidTransitionError reports a command the current status does not allow.
type InvalidTransitionError struct {
	Status Status
	Action string
}

func (e *InvalidTransitionError) Error() string {
	return fmt.Sprintf("cannot %s while %s", e.Action, e.Status)
}

// TimeOrderError reports a command dated before the subscription's last
// event; history must not run backwards.
type TimeOrderError struct{ At, Last time.Time }

func (e *TimeOrderError) Error() string {
	return fmt.Sprintf("command time %s is before the last event at %s",
		e.At.Format(time.RFC3339), e.Last.Format(time.RFC3339))
}

// PeriodEndedError reports a command that depends on the current billing
// period (a proration or something scheduled for its end) arriving after the
// period ended but before its renewal was recorded.
type PeriodEndedError struct{ PeriodEnd time.Time }

func (e *PeriodEndedError) Error() string {
	return fmt.Sprintf("current period ended at %s and has not been renewed", e.PeriodEnd.Format(time.RFC3339))
}

// UnknownEventTypeError reports an event type this package does not define.
type UnknownEventTypeError struct{ Type string }

func (e *UnknownEventTypeError) Error() string { return fmt.Sprintf("unknown event type %q", e.Type) }
