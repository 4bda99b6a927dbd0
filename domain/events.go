package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
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

// CancelReasonRequested is the reason of a cancellation the customer asked for.
const CancelReasonRequested = "requested"

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

func (SubscriptionCreated) EventType() string   { return "subscription.created" }
func (PlanChanged) EventType() string           { return "subscription.plan_changed" }
func (PlanChangeScheduled) EventType() string   { return "subscription.plan_change_scheduled" }
func (SeatsChanged) EventType() string          { return "subscription.seats_changed" }
func (CancellationScheduled) EventType() string { return "subscription.cancellation_scheduled" }
func (CancellationUndone) EventType() string    { return "subscription.cancellation_undone" }
func (Canceled) EventType() string              { return "subscription.canceled" }
func (Paused) EventType() string                { return "subscription.paused" }
func (Resumed) EventType() string               { return "subscription.resumed" }

func (e SubscriptionCreated) OccurredAt() time.Time   { return e.CreatedAt }
func (e PlanChanged) OccurredAt() time.Time           { return e.ChangedAt }
func (e PlanChangeScheduled) OccurredAt() time.Time   { return e.ScheduledAt }
func (e SeatsChanged) OccurredAt() time.Time          { return e.ChangedAt }
func (e CancellationScheduled) OccurredAt() time.Time { return e.RequestedAt }
func (e CancellationUndone) OccurredAt() time.Time    { return e.UndoneAt }
func (e Canceled) OccurredAt() time.Time              { return e.CanceledAt }
func (e Paused) OccurredAt() time.Time                { return e.PausedAt }
func (e Resumed) OccurredAt() time.Time               { return e.ResumedAt }

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
