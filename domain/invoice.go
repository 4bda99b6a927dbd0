package domain

import (
	"errors"
	"fmt"
	"time"
)

// InvoiceStatus is an invoice's lifecycle state.
type InvoiceStatus string

const (
	InvoiceDraft         InvoiceStatus = "draft" // reserved: invoices are finalised when issued
	InvoiceOpen          InvoiceStatus = "open"
	InvoicePaid          InvoiceStatus = "paid"
	InvoiceVoid          InvoiceStatus = "void"
	InvoiceUncollectible InvoiceStatus = "uncollectible"
)

// InvoiceReason says why an invoice was issued.
type InvoiceReason string

const (
	InvoiceForCreate InvoiceReason = "subscription_create" // the first paid period
	InvoiceForCycle  InvoiceReason = "subscription_cycle"  // a renewal (or a trial's conversion)
	InvoiceForUpdate InvoiceReason = "subscription_update" // an immediate plan or seat change
)

// InvoiceLine is one line of an invoice: a prorated line of a change or a
// whole period of a renewal. It has the shape of a proration line.
type InvoiceLine = ProrationLine

// InvoiceCreated issues an invoice, numbered and with the customer's credit
// applied. Total is Subtotal − CreditApplied. A credit (a negative Subtotal,
// from a downgrade's proration) has CreditApplied = Subtotal: the whole
// amount goes to the customer's balance and Total is 0. An invoice with
// Total 0 is paid when issued. UpgradeID is set when an upgrade saga collects
// the invoice itself; otherwise payment collection (dunning) does.
type InvoiceCreated struct {
	InvoiceID      string        `json:"invoice_id"`
	Number         string        `json:"number"`
	SubscriptionID string        `json:"subscription_id"`
	CustomerID     string        `json:"customer_id"`
	Currency       string        `json:"currency"`
	Reason         InvoiceReason `json:"reason"`
	Lines          []InvoiceLine `json:"lines"`
	Subtotal       int64         `json:"subtotal"`
	CreditApplied  int64         `json:"credit_applied"`
	Total          int64         `json:"total"`
	PeriodStart    time.Time     `json:"period_start"`
	PeriodEnd      time.Time     `json:"period_end"`
	UpgradeID      string        `json:"upgrade_id,omitempty"`
	CreatedAt      time.Time     `json:"created_at"`
}

// InvoicePaymentSucceeded records a succeeded charge paying the invoice.
type InvoicePaymentSucceeded struct {
	ChargeID string    `json:"charge_id"`
	Amount   int64     `json:"amount"`
	Attempt  int       `json:"attempt"`
	PaidAt   time.Time `json:"paid_at"`
}

// InvoicePaymentFailed records a declined attempt. NextAttemptAt is when
// dunning retries; nil when it will not (retries exhausted, or the invoice
// belongs to an upgrade saga, which voids it instead).
type InvoicePaymentFailed struct {
	Attempt        int        `json:"attempt"`
	DeclineCode    string     `json:"decline_code"`
	DeclineMessage string     `json:"decline_message"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	FailedAt       time.Time  `json:"failed_at"`
}

// InvoiceRefunded records money returned on the invoice's charge.
type InvoiceRefunded struct {
	RefundID   string    `json:"refund_id"`
	ChargeID   string    `json:"charge_id"`
	Amount     int64     `json:"amount"`
	RefundedAt time.Time `json:"refunded_at"`
}

// InvoiceVoided cancels an invoice: nothing is owed on it any more (any
// charge was refunded first, and the credit it used is granted back).
type InvoiceVoided struct {
	Reason   string    `json:"reason"`
	VoidedAt time.Time `json:"voided_at"`
}

// InvoiceMarkedUncollectible gives up collecting an invoice after dunning.
type InvoiceMarkedUncollectible struct {
	At time.Time `json:"at"`
}

func (InvoiceCreated) EventType() string             { return "invoice.created" }
func (InvoicePaymentSucceeded) EventType() string    { return "invoice.payment_succeeded" }
func (InvoicePaymentFailed) EventType() string       { return "invoice.payment_failed" }
func (InvoiceRefunded) EventType() string            { return "invoice.refunded" }
func (InvoiceVoided) EventType() string              { return "invoice.voided" }
func (InvoiceMarkedUncollectible) EventType() string { return "invoice.marked_uncollectible" }

func (e InvoiceCreated) OccurredAt() time.Time             { return e.CreatedAt }
func (e InvoicePaymentSucceeded) OccurredAt() time.Time    { return e.PaidAt }
func (e InvoicePaymentFailed) OccurredAt() time.Time       { return e.FailedAt }
func (e InvoiceRefunded) OccurredAt() time.Time            { return e.RefundedAt }
func (e InvoiceVoided) OccurredAt() time.Time              { return e.VoidedAt }
func (e InvoiceMarkedUncollectible) OccurredAt() time.Time { return e.At }

// Invoice is the state folded from an invoice's events.
type Invoice struct {
	InvoiceCreated
	Status         InvoiceStatus
	Attempts       int       // charge attempts made (declined ones included)
	NextAttemptAt  time.Time // zero when no attempt is due
	FirstFailedAt  time.Time // when the first attempt was declined
	ChargeID       string
	AmountPaid     int64
	AmountRefunded int64
	PaidAt         time.Time
	VoidedAt       time.Time
	UpdatedAt      time.Time
	Version        int64
}

// Exists reports whether the invoice was issued.
func (inv Invoice) Exists() bool { return inv.Version > 0 }

// Collectible reports whether dunning should try to charge it: open, not an
// upgrade saga's, with an attempt due.
func (inv Invoice) Collectible() bool {
	return inv.Status == InvoiceOpen && inv.UpgradeID == "" && !inv.NextAttemptAt.IsZero()
}

// EvolveInvoice applies one invoice event; other values change nothing.
func EvolveInvoice(inv Invoice, e Event) Invoice {
	switch e := e.(type) {
	case InvoiceCreated:
		inv = Invoice{InvoiceCreated: e, Status: InvoiceOpen, Version: inv.Version}
		switch {
		case e.Total == 0:
			inv.Status, inv.PaidAt = InvoicePaid, e.CreatedAt
		case e.UpgradeID == "":
			inv.NextAttemptAt = e.CreatedAt // collect at once
		}
	case InvoicePaymentSucceeded:
		inv.Status, inv.ChargeID, inv.AmountPaid, inv.PaidAt = InvoicePaid, e.ChargeID, e.Amount, e.PaidAt
		inv.Attempts, inv.NextAttemptAt = e.Attempt, time.Time{}
	case InvoicePaymentFailed:
		inv.Attempts, inv.NextAttemptAt = e.Attempt, time.Time{}
		if inv.FirstFailedAt.IsZero() {
			inv.FirstFailedAt = e.FailedAt
		}
		if e.NextAttemptAt != nil {
			inv.NextAttemptAt = *e.NextAttemptAt
		}
	case InvoiceRefunded:
		inv.AmountRefunded += e.Amount
	case InvoiceVoided:
		inv.Status, inv.VoidedAt, inv.NextAttemptAt = InvoiceVoid, e.VoidedAt, time.Time{}
	case InvoiceMarkedUncollectible:
		inv.Status, inv.NextAttemptAt = InvoiceUncollectible, time.Time{}
	default:
		return inv
	}
	inv.Version++
	inv.UpdatedAt = e.OccurredAt()
	return inv
}

// Errors of invoice decisions.
var (
	ErrInvoiceNotFound = errors.New("invoice not found")
	ErrInvoiceNotOpen  = errors.New("invoice is not open")
)

// AttemptOrderError refuses a payment attempt that is not the invoice's next
// one: attempts are numbered 1, 2, … and each is recorded once.
type AttemptOrderError struct{ Attempt, Next int }

func (e *AttemptOrderError) Error() string {
	return fmt.Sprintf("payment attempt %d is not the invoice's next attempt (%d)", e.Attempt, e.Next)
}

// RecordPayment decides the event recording a gateway's answer to attempt
// number attempt (the invoice's next, inv.Attempts+1) on inv at now. A
// decline schedules the next attempt per policy, or none when retries are
// exhausted or a saga owns the invoice.
func RecordPayment(inv Invoice, c Charge, attempt int, policy DunningPolicy, now time.Time) (Event, error) {
	if inv.Status != InvoiceOpen {
		return nil, ErrInvoiceNotOpen
	}
	if attempt != inv.Attempts+1 {
		// Attempt 0 or below would index the policy's retries at -1, and a
		// repeat or a skip would move the count the retries follow.
		return nil, &AttemptOrderError{Attempt: attempt, Next: inv.Attempts + 1}
	}
	now = now.UTC().Truncate(time.Second)
	if c.Status == ChargeSucceeded {
		return InvoicePaymentSucceeded{ChargeID: c.ID, Amount: c.Amount, Attempt: attempt, PaidAt: now}, nil
	}
	e := InvoicePaymentFailed{Attempt: attempt, DeclineCode: c.DeclineCode, DeclineMessage: c.DeclineMessage, FailedAt: now}
	if inv.UpgradeID == "" {
		if next, ok := policy.retryAt(inv, attempt, now); ok {
			e.NextAttemptAt = &next
		}
	}
	return e, nil
}

// DunningPolicy says when a failed invoice is retried and what happens when
// the retries run out.
type DunningPolicy struct {
	// RetryDays are the retries, in days after the first failed attempt.
	RetryDays []int
	// MarkUnpaid ends dunning with the subscription unpaid instead of canceled.
	MarkUnpaid bool
}

// DefaultDunningPolicy retries 1, 3 and 5 days after the first failure,
// then cancels.
var DefaultDunningPolicy = DunningPolicy{RetryDays: []int{1, 3, 5}}

// retryAt is when to retry after attempt (1-based) failed at now: retry n
// follows failed attempt n, RetryDays[n-1] days after the first failure.
func (p DunningPolicy) retryAt(inv Invoice, attempt int, now time.Time) (time.Time, bool) {
	if attempt > len(p.RetryDays) {
		return time.Time{}, false
	}
	first := inv.FirstFailedAt
	if attempt == 1 {
		first = now
	}
	return first.AddDate(0, 0, p.RetryDays[attempt-1]), true
}
