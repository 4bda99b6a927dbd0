package domain

import "time"

// Timing says when a plan change takes effect.
type Timing string

const (
	// TimingDefault lets Decide choose: downgrades of a paid period wait for
	// its end (the customer already paid for it), everything else is
	// immediate.
	TimingDefault   Timing = ""
	TimingImmediate Timing = "immediate"
	TimingPeriodEnd Timing = "period_end"
)

// Command is a request to change a subscription; Decide accepts exactly the
// types in this file.
type Command interface{ isCommand() }

// Create starts a subscription.
type Create struct {
	SubscriptionID string
	CustomerID     string
	Plan           Plan
	Seats          int64
	TrialDays      *int   // nil: the plan's default; 0: no trial
	PaymentMethod  string // the default payment method; "" for none yet
}

// ChangePlan moves the subscription to another plan.
type ChangePlan struct {
	Plan   Plan
	Seats  int64 // 0 keeps the current seat count
	Timing Timing
}

// ChangeSeats changes the seat count immediately.
type ChangeSeats struct{ Seats int64 }

// Cancel ends the subscription now, or schedules it for the period end.
type Cancel struct{ AtPeriodEnd bool }

// UndoCancel withdraws a pending cancel-at-period-end.
type UndoCancel struct{}

// Pause suspends an active subscription.
type Pause struct{}

// Resume reactivates a paused subscription.
type Resume struct{}

// ChangePaymentMethod replaces the default payment method.
type ChangePaymentMethod struct{ PaymentMethod string }

// Renew ends the period that ends at PeriodEnd and starts the next (or
// carries out a cancellation due then). Naming the period makes a repeat
// harmless: once renewed, the subscription's period no longer ends there,
// and the repeat is refused with *AlreadyRenewedError.
type Renew struct {
	PeriodEnd time.Time
	InvoiceID string // the id of the new period's invoice, if one is due
	// CancelTrialWithoutPaymentMethod cancels a trial that ends without a
	// payment method, instead of converting it to an invoice that dunning
	// will chase.
	CancelTrialWithoutPaymentMethod bool
}

// NotifyTrialWillEnd records the reminder TrialReminder before a trial ends.
type NotifyTrialWillEnd struct{}

// MarkPastDue records a failed payment of InvoiceID.
type MarkPastDue struct{ InvoiceID string }

// RecoverPayment records that InvoiceID was paid after failing.
type RecoverPayment struct{ InvoiceID string }

// EndDunning gives up on InvoiceID: cancel for nonpayment, or mark unpaid.
type EndDunning struct {
	InvoiceID  string
	MarkUnpaid bool
}

// RecordUpgradeFailed records a failed upgrade saga (see Upgrade).
type RecordUpgradeFailed struct {
	UpgradeID   string
	Plan        PlanTerms
	Seats       int64
	Reason      string
	DeclineCode string
}

func (Create) isCommand()              {}
func (ChangePaymentMethod) isCommand() {}
func (Renew) isCommand()               {}
func (NotifyTrialWillEnd) isCommand()  {}
func (MarkPastDue) isCommand()         {}
func (RecoverPayment) isCommand()      {}
func (EndDunning) isCommand()          {}
func (RecordUpgradeFailed) isCommand() {}
func (ChangePlan) isCommand()          {}
func (ChangeSeats) isCommand()         {}
func (Cancel) isCommand()              {}
func (UndoCancel) isCommand()          {}
func (Pause) isCommand()               {}
func (Resume) isCommand()              {}

// ValidateSeats returns *InvalidSeatsError unless 1 <= n <= MaxSeats. Decide
// applies it; it is exported so callers can report bad input per field.
func ValidateSeats(n int64) error {
	if n < 1 || n > MaxSeats {
		return &InvalidSeatsError{Seats: n}
	}
	return nil
}

// ValidateTrialDays returns *InvalidTrialError unless 0 <= days <=
// MaxTrialDays. Decide applies it to Create.TrialDays.
func ValidateTrialDays(days int) error {
	if days < 0 || days > MaxTrialDays {
		return &InvalidTrialError{Days: days}
	}
	return nil
}
