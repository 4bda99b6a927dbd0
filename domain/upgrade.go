package domain

import (
	"errors"
	"time"
)

// UpgradeStatus is where an upgrade saga is.
type UpgradeStatus string

// An upgrade moves forward through invoiced, charged and plan_applied to
// completed; a failure after the charge goes through compensating (refund
// due) to aborted, and one before it straight to aborted.
const (
	UpgradeStartedStatus      UpgradeStatus = "started"
	UpgradeInvoicedStatus     UpgradeStatus = "invoiced"
	UpgradeChargedStatus      UpgradeStatus = "charged"
	UpgradePlanAppliedStatus  UpgradeStatus = "plan_applied"
	UpgradeCompletedStatus    UpgradeStatus = "completed"
	UpgradeCompensatingStatus UpgradeStatus = "compensating"
	UpgradeAbortedStatus      UpgradeStatus = "aborted"
)

// Reasons an upgrade is aborted.
const (
	UpgradeReasonDeclined = "payment_declined"
	// UpgradeReasonConflict: the subscription changed after the upgrade was
	// priced, so the price charged is no longer the price of the change.
	UpgradeReasonConflict = "subscription_changed"
)

// UpgradeStarted begins a paid change (an immediate plan change or seat
// increase whose proration costs money). It carries the subscription event
// the change will append, decided against SubscriptionVersion: the saga
// appends exactly that event at exactly that version, so what is charged is
// what is applied. One of PlanChange and SeatsChange is set.
type UpgradeStarted struct {
	UpgradeID           string        `json:"upgrade_id"`
	SubscriptionID      string        `json:"subscription_id"`
	CustomerID          string        `json:"customer_id"`
	SubscriptionVersion int64         `json:"subscription_version"`
	PlanChange          *PlanChanged  `json:"plan_change,omitempty"`
	SeatsChange         *SeatsChanged `json:"seats_change,omitempty"`
	Amount              int64         `json:"amount"`
	Currency            string        `json:"currency"`
	PaymentMethod       string        `json:"payment_method"`
	StartedAt           time.Time     `json:"started_at"`
}

// UpgradeInvoiced: the proration invoice was issued (credit applied).
type UpgradeInvoiced struct {
	InvoiceID string    `json:"invoice_id"`
	Total     int64     `json:"total"`
	At        time.Time `json:"at"`
}

// UpgradeCharged: the invoice was paid (ChargeID is empty when credit
// covered it and nothing was charged).
type UpgradeCharged struct {
	ChargeID string    `json:"charge_id,omitempty"`
	Amount   int64     `json:"amount"`
	At       time.Time `json:"at"`
}

// UpgradePlanApplied: the subscription event was appended.
type UpgradePlanApplied struct {
	SubscriptionVersion int64     `json:"subscription_version"`
	At                  time.Time `json:"at"`
}

// UpgradeCompleted: the new plan's features are visible to entitlement reads.
type UpgradeCompleted struct {
	At time.Time `json:"at"`
}

// UpgradeCompensating: the charge went through but the change cannot be
// applied; the charge must be refunded.
type UpgradeCompensating struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// UpgradeAborted ends a failed upgrade: any charge refunded, the invoice void,
// its credit returned, and subscription.upgrade_failed recorded.
type UpgradeAborted struct {
	Reason      string    `json:"reason"`
	DeclineCode string    `json:"decline_code,omitempty"`
	RefundID    string    `json:"refund_id,omitempty"`
	At          time.Time `json:"at"`
}

func (UpgradeStarted) EventType() string      { return "upgrade.started" }
func (UpgradeInvoiced) EventType() string     { return "upgrade.invoiced" }
func (UpgradeCharged) EventType() string      { return "upgrade.charged" }
func (UpgradePlanApplied) EventType() string  { return "upgrade.plan_applied" }
func (UpgradeCompleted) EventType() string    { return "upgrade.completed" }
func (UpgradeCompensating) EventType() string { return "upgrade.compensating" }
func (UpgradeAborted) EventType() string      { return "upgrade.aborted" }

func (e UpgradeStarted) OccurredAt() time.Time      { return e.StartedAt }
func (e UpgradeInvoiced) OccurredAt() time.Time     { return e.At }
func (e UpgradeCharged) OccurredAt() time.Time      { return e.At }
func (e UpgradePlanApplied) OccurredAt() time.Time  { return e.At }
func (e UpgradeCompleted) OccurredAt() time.Time    { return e.At }
func (e UpgradeCompensating) OccurredAt() time.Time { return e.At }
func (e UpgradeAborted) OccurredAt() time.Time      { return e.At }

// Upgrade is the state folded from an upgrade saga's events.
type Upgrade struct {
	UpgradeStarted
	Status         UpgradeStatus
	InvoiceID      string
	InvoiceTotal   int64
	ChargeID       string
	Charged        int64
	AppliedVersion int64 // the subscription's version after the change
	Reason         string
	DeclineCode    string
	RefundID       string
	UpdatedAt      time.Time
	Version        int64
}

// Exists reports whether the saga started.
func (u Upgrade) Exists() bool { return u.Version > 0 }

// Done reports whether the saga reached a final state.
func (u Upgrade) Done() bool {
	return u.Status == UpgradeCompletedStatus || u.Status == UpgradeAbortedStatus
}

// Change is the subscription event the upgrade applies.
func (u Upgrade) Change() Event {
	if u.PlanChange != nil {
		return *u.PlanChange
	}
	return *u.SeatsChange
}

// Target is the plan and seats the upgrade moves to; current is the plan a
// seat change keeps.
func (u Upgrade) Target(current PlanTerms) (PlanTerms, int64) {
	if u.PlanChange != nil {
		return u.PlanChange.Plan, u.PlanChange.Seats
	}
	return current, u.SeatsChange.Seats
}

// ErrUpgradeNotFound is the answer for an unknown upgrade id.
var ErrUpgradeNotFound = errors.New("upgrade not found")

// EvolveUpgrade applies one upgrade event; other values change nothing.
func EvolveUpgrade(u Upgrade, e Event) Upgrade {
	switch e := e.(type) {
	case UpgradeStarted:
		u = Upgrade{UpgradeStarted: e, Status: UpgradeStartedStatus, Version: u.Version}
	case UpgradeInvoiced:
		u.Status, u.InvoiceID, u.InvoiceTotal = UpgradeInvoicedStatus, e.InvoiceID, e.Total
	case UpgradeCharged:
		u.Status, u.ChargeID, u.Charged = UpgradeChargedStatus, e.ChargeID, e.Amount
	case UpgradePlanApplied:
		u.Status, u.AppliedVersion = UpgradePlanAppliedStatus, e.SubscriptionVersion
	case UpgradeCompleted:
		u.Status = UpgradeCompletedStatus
	case UpgradeCompensating:
		u.Status, u.Reason = UpgradeCompensatingStatus, e.Reason
	case UpgradeAborted:
		u.Status, u.Reason, u.DeclineCode, u.RefundID = UpgradeAbortedStatus, e.Reason, e.DeclineCode, e.RefundID
	default:
		return u
	}
	u.Version++
	u.UpdatedAt = e.OccurredAt()
	return u
}

// PaidChange reports whether events (a Decide result) are a change that
// costs money now, so must go through an upgrade saga: an immediate plan or
// seat change whose proration totals more than zero.
func PaidChange(events []Event) (Event, int64, bool) {
	if len(events) != 1 {
		return nil, 0, false
	}
	lines, ok := ProrationOf(events[0])
	if !ok {
		return nil, 0, false
	}
	var total int64
	for _, l := range lines {
		total += l.Amount
	}
	return events[0], total, total > 0
}

// ProrationOf is the proration lines of a plan or seat change; ok is false for any other event.
func ProrationOf(change Event) (lines []ProrationLine, ok bool) {
	switch e := change.(type) {
	case PlanChanged:
		return e.Proration, true
	case SeatsChanged:
		return e.Proration, true
	}
	return nil, false
}
