package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Event is a fact in a subscription's history. Events are the persistent
// record, so each carries every value Evolve needs (the terms, seats, amounts
// and times that applied) rather than anything it would have to look up.
type Event interface {
	EventType() string
	OccurredAt() time.Time
}

// Direction classifies a plan change by its monthly amount for all seats.
type Direction string

const (
	DirectionUpgrade   Direction = "upgrade"
	DirectionDowngrade Direction = "downgrade"
	DirectionLateral   Direction = "lateral"
)

// Reasons a subscription.canceled event gives.
const (
	// CancelReasonRequested: the customer asked (now or at the period end).
	CancelReasonRequested = "requested"
	// CancelReasonNonpayment: dunning ran out of retries.
	CancelReasonNonpayment = "nonpayment"
	// CancelReasonTrialEnded: the trial ended without a payment method and the
	// service is configured to cancel rather than go past due.
	CancelReasonTrialEnded = "trial_ended_without_payment_method"
)

// ProrationLine is a prorated invoice line. UnitAmount is the plan's price per
// seat for a full interval and Quantity the seats; Amount is the signed,
// prorated total for [PeriodStart, PeriodEnd), negative for a credit.
type ProrationLine struct {
	Description string    `json:"description"`
	Amount      int64     `json:"amount"`
	Quantity    int64     `json:"quantity"`
	UnitAmount  int64     `json:"unit_amount"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	Proration   bool      `json:"proration"`
	PlanID      string    `json:"plan_id"`
}

// SubscriptionCreated starts a history; TrialEnd is nil without a trial.
type SubscriptionCreated struct {
	SubscriptionID string     `json:"subscription_id"`
	CustomerID     string     `json:"customer_id"`
	Plan           PlanTerms  `json:"plan"`
	Seats          int64      `json:"seats"`
	Status         Status     `json:"status"`
	TrialEnd       *time.Time `json:"trial_end,omitempty"`
	PaymentMethod  string     `json:"payment_method,omitempty"`
	BillingAnchor  time.Time  `json:"billing_anchor"`
	PeriodStart    time.Time  `json:"period_start"`
	PeriodEnd      time.Time  `json:"period_end"`
	CreatedAt      time.Time  `json:"created_at"`
}

// PlanChanged records an immediate plan change. The billing anchor and period
// are those after the change: unchanged unless the interval changed.
type PlanChanged struct {
	FromPlan      PlanTerms       `json:"from_plan"`
	FromSeats     int64           `json:"from_seats"`
	Plan          PlanTerms       `json:"plan"`
	Seats         int64           `json:"seats"`
	Direction     Direction       `json:"direction"`
	Proration     []ProrationLine `json:"proration"`
	BillingAnchor time.Time       `json:"billing_anchor"`
	PeriodStart   time.Time       `json:"period_start"`
	PeriodEnd     time.Time       `json:"period_end"`
	ChangedAt     time.Time       `json:"changed_at"`
}

// PlanChangeScheduled defers a plan change to EffectiveAt, the period end,
// replacing any change scheduled before.
type PlanChangeScheduled struct {
	Plan        PlanTerms `json:"plan"`
	Seats       int64     `json:"seats"`
	EffectiveAt time.Time `json:"effective_at"`
	ScheduledAt time.Time `json:"scheduled_at"`
}

// SeatsChanged records an immediate seat change; a trial has no proration.
type SeatsChanged struct {
	FromSeats int64           `json:"from_seats"`
	Seats     int64           `json:"seats"`
	Proration []ProrationLine `json:"proration"`
	ChangedAt time.Time       `json:"changed_at"`
}

// CancellationScheduled records a request to cancel at CancelAt, the period
// end; a scheduler acting on it is not part of this package.
type CancellationScheduled struct {
	CancelAt    time.Time `json:"cancel_at"`
	RequestedAt time.Time `json:"requested_at"`
}

// CancellationUndone withdraws a scheduled cancellation.
type CancellationUndone struct {
	UndoneAt time.Time `json:"undone_at"`
}

// Canceled ends the subscription; nothing can follow it.
type Canceled struct {
	CanceledAt time.Time `json:"canceled_at"`
	Reason     string    `json:"reason"`
}

// Paused suspends an active subscription.
type Paused struct {
	PausedAt time.Time `json:"paused_at"`
}

// Resumed makes a paused subscription active again.
type Resumed struct {
	ResumedAt time.Time `json:"resumed_at"`
}

// PaymentMethodChanged replaces the default payment method.
type PaymentMethodChanged struct {
	PaymentMethod string    `json:"payment_method"`
	ChangedAt     time.Time `json:"changed_at"`
}

// Renewed starts the next period at the end of the last one, on the plan and
// seats that apply from then (a scheduled change takes effect here). A
// trialing subscription converts to active. InvoiceID is the period's
// invoice, issued in the same transaction; empty when paused (no charge).
type Renewed struct {
	Plan          PlanTerms `json:"plan"`
	Seats         int64     `json:"seats"`
	BillingAnchor time.Time `json:"billing_anchor"`
	PeriodStart   time.Time `json:"period_start"`
	PeriodEnd     time.Time `json:"period_end"`
	InvoiceID     string    `json:"invoice_id,omitempty"`
	RenewedAt     time.Time `json:"renewed_at"`
}

// TrialWillEnd notes that the trial ends soon (TrialReminder before), for
// the customer to be told; it is recorded once per trial.
type TrialWillEnd struct {
	TrialEnd   time.Time `json:"trial_end"`
	NotifiedAt time.Time `json:"notified_at"`
}

// PastDue records that an invoice's payment failed: dunning retries it.
type PastDue struct {
	InvoiceID string    `json:"invoice_id"`
	At        time.Time `json:"at"`
}

// PaymentRecovered returns a past-due (or unpaid) subscription to active
// after its invoice was paid.
type PaymentRecovered struct {
	InvoiceID string    `json:"invoice_id"`
	At        time.Time `json:"at"`
}

// MarkedUnpaid ends dunning without canceling (per configuration).
type MarkedUnpaid struct {
	InvoiceID string    `json:"invoice_id"`
	At        time.Time `json:"at"`
}

// UpgradeFailed records that a paid plan or seat change could not be made,
// and why; everything the attempt did was compensated (see Upgrade).
type UpgradeFailed struct {
	UpgradeID   string    `json:"upgrade_id"`
	Plan        PlanTerms `json:"plan"`
	Seats       int64     `json:"seats"`
	Reason      string    `json:"reason"`
	DeclineCode string    `json:"decline_code,omitempty"`
	FailedAt    time.Time `json:"failed_at"`
}

func (SubscriptionCreated) EventType() string   { return "subscription.created" }
func (PlanChanged) EventType() string           { return "subscription.plan_changed" }
func (PlanChangeScheduled) EventType() string   { return "subscription.plan_change_scheduled" }
func (SeatsChanged) EventType() string          { return "subscription.seats_changed" }
func (CancellationScheduled) EventType() string { return "subscription.cancellation_scheduled" }
func (CancellationUndone) EventType() string    { return "subscription.cancellation_undone" }
func (Canceled) EventType() string              { return "subscription.canceled" }
func (Paused) EventType() string                { return "subscription.paused" }
func (Resumed) EventType() string               { return "subscription.resumed" }
func (PaymentMethodChanged) EventType() string  { return "subscription.payment_method_changed" }
func (Renewed) EventType() string               { return "subscription.renewed" }
func (TrialWillEnd) EventType() string          { return "subscription.trial_will_end" }
func (PastDue) EventType() string               { return "subscription.past_due" }
func (PaymentRecovered) EventType() string      { return "subscription.payment_recovered" }
func (MarkedUnpaid) EventType() string          { return "subscription.marked_unpaid" }
func (UpgradeFailed) EventType() string         { return "subscription.upgrade_failed" }

func (e SubscriptionCreated) OccurredAt() time.Time   { return e.CreatedAt }
func (e PlanChanged) OccurredAt() time.Time           { return e.ChangedAt }
func (e PlanChangeScheduled) OccurredAt() time.Time   { return e.ScheduledAt }
func (e SeatsChanged) OccurredAt() time.Time          { return e.ChangedAt }
func (e CancellationScheduled) OccurredAt() time.Time { return e.RequestedAt }
func (e CancellationUndone) OccurredAt() time.Time    { return e.UndoneAt }
func (e Canceled) OccurredAt() time.Time              { return e.CanceledAt }
func (e Paused) OccurredAt() time.Time                { return e.PausedAt }
func (e Resumed) OccurredAt() time.Time               { return e.ResumedAt }
func (e PaymentMethodChanged) OccurredAt() time.Time  { return e.ChangedAt }
func (e Renewed) OccurredAt() time.Time               { return e.RenewedAt }
func (e TrialWillEnd) OccurredAt() time.Time          { return e.NotifiedAt }
func (e PastDue) OccurredAt() time.Time               { return e.At }
func (e PaymentRecovered) OccurredAt() time.Time      { return e.At }
func (e MarkedUnpaid) OccurredAt() time.Time          { return e.At }
func (e UpgradeFailed) OccurredAt() time.Time         { return e.FailedAt }

// decoders is the one registry of event types: DecodeEvent and EventTypes
// both read it, so a new event type needs one line here (and a case in
// Evolve, which a test enforces).
var decoders = map[string]func([]byte) (Event, error){
	SubscriptionCreated{}.EventType():   decodeAs[SubscriptionCreated],
	PlanChanged{}.EventType():           decodeAs[PlanChanged],
	PlanChangeScheduled{}.EventType():   decodeAs[PlanChangeScheduled],
	SeatsChanged{}.EventType():          decodeAs[SeatsChanged],
	CancellationScheduled{}.EventType(): decodeAs[CancellationScheduled],
	CancellationUndone{}.EventType():    decodeAs[CancellationUndone],
	Canceled{}.EventType():              decodeAs[Canceled],
	Paused{}.EventType():                decodeAs[Paused],
	Resumed{}.EventType():               decodeAs[Resumed],
	PaymentMethodChanged{}.EventType():  decodeAs[PaymentMethodChanged],
	Renewed{}.EventType():               decodeAs[Renewed],
	TrialWillEnd{}.EventType():          decodeAs[TrialWillEnd],
	PastDue{}.EventType():               decodeAs[PastDue],
	PaymentRecovered{}.EventType():      decodeAs[PaymentRecovered],
	MarkedUnpaid{}.EventType():          decodeAs[MarkedUnpaid],
	UpgradeFailed{}.EventType():         decodeAs[UpgradeFailed],

	InvoiceCreated{}.EventType():             decodeAs[InvoiceCreated],
	InvoicePaymentSucceeded{}.EventType():    decodeAs[InvoicePaymentSucceeded],
	InvoicePaymentFailed{}.EventType():       decodeAs[InvoicePaymentFailed],
	InvoiceVoided{}.EventType():              decodeAs[InvoiceVoided],
	InvoiceRefunded{}.EventType():            decodeAs[InvoiceRefunded],
	InvoiceMarkedUncollectible{}.EventType(): decodeAs[InvoiceMarkedUncollectible],

	InvoiceIssued{}.EventType(): decodeAs[InvoiceIssued],
	CreditGranted{}.EventType(): decodeAs[CreditGranted],

	UpgradeStarted{}.EventType():      decodeAs[UpgradeStarted],
	UpgradeInvoiced{}.EventType():     decodeAs[UpgradeInvoiced],
	UpgradeCharged{}.EventType():      decodeAs[UpgradeCharged],
	UpgradePlanApplied{}.EventType():  decodeAs[UpgradePlanApplied],
	UpgradeCompleted{}.EventType():    decodeAs[UpgradeCompleted],
	UpgradeCompensating{}.EventType(): decodeAs[UpgradeCompensating],
	UpgradeAborted{}.EventType():      decodeAs[UpgradeAborted],
}

// StreamTypeOf is the type of stream (the aggregate) events of eventType
// belong to: the part before the first dot ("invoice" for "invoice.created").
func StreamTypeOf(eventType string) string {
	before, _, _ := strings.Cut(eventType, ".")
	return before
}

// EventTypes lists every event type this package defines, sorted.
func EventTypes() []string { return slices.Sorted(maps.Keys(decoders)) }

// DecodeEvent decodes the JSON encoding (as produced by json.Marshal) of an
// event of the given type into its value type, rejecting unknown fields so a
// schema drift fails loudly instead of replaying wrong. An unknown type is an
// *UnknownEventTypeError.
func DecodeEvent(eventType string, data []byte) (Event, error) {
	decode, ok := decoders[eventType]
	if !ok {
		return nil, &UnknownEventTypeError{Type: eventType}
	}
	e, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return e, nil
}

func decodeAs[E Event](data []byte) (Event, error) {
	var e E
	if err := decodeStrict(data, &e); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailingData
	}
	return nil
}
