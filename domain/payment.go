package domain

import (
	"context"
	"errors"
)

// PaymentGateway is what billing needs from a payment provider: charge a
// customer's payment method, refund a charge, and look up a charge whose
// outcome a timeout left unknown. Adapters live outside this package (the
// deterministic sandbox is internal/payments).
//
// Every call carries an idempotency key chosen by the caller: a repeat with
// the same key returns the first call's outcome and never moves money twice,
// which is what lets a process that crashed mid-call simply call again.
type PaymentGateway interface {
	Charge(ctx context.Context, req ChargeRequest) (Charge, error)
	Refund(ctx context.Context, req RefundRequest) (Refund, error)
	// LookupCharge returns the charge made with idempotencyKey, or
	// ErrChargeNotFound when none was made.
	LookupCharge(ctx context.Context, idempotencyKey string) (Charge, error)
}

// ChargeRequest asks to take Amount (minor units, > 0) of Currency from
// PaymentMethod.
type ChargeRequest struct {
	IdempotencyKey string
	PaymentMethod  string
	CustomerID     string
	Amount         int64
	Currency       string
	Description    string
}

// ChargeStatus is a charge's final outcome.
type ChargeStatus string

const (
	ChargeSucceeded ChargeStatus = "succeeded"
	ChargeDeclined  ChargeStatus = "declined"
)

// Decline codes a gateway reports (or billing assigns, for NoPaymentMethod).
const (
	DeclineCardDeclined      = "card_declined"
	DeclineInsufficientFunds = "insufficient_funds"
	DeclineNoPaymentMethod   = "no_payment_method"
)

// Charge is the outcome of a ChargeRequest. A declined charge moved no money
// and has a DeclineCode and a human-readable DeclineMessage.
type Charge struct {
	ID             string
	IdempotencyKey string
	Status         ChargeStatus
	Amount         int64
	Currency       string
	DeclineCode    string
	DeclineMessage string
}

// RefundRequest asks to return Amount of a succeeded charge.
type RefundRequest struct {
	IdempotencyKey string
	ChargeID       string
	Amount         int64
}

// Refund is a completed refund.
type Refund struct {
	ID       string
	ChargeID string
	Amount   int64
}

var (
	// ErrGatewayTimeout means the call's outcome is unknown: money may or may
	// not have moved. The caller finds out with LookupCharge (or by calling
	// again with the same idempotency key), never by charging anew.
	ErrGatewayTimeout = errors.New("payment gateway timed out; the outcome is unknown")
	// ErrChargeNotFound is LookupCharge's answer for a key never charged.
	ErrChargeNotFound = errors.New("no charge with this idempotency key")
)
