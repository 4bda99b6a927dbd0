package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Customer is the state folded from a customer's stream: the invoice series
// it numbers (one per customer, so numbering never serialises different
// customers) and its credit balances, one per currency. Both change only in
// the transaction that issues or voids an invoice, under the stream's
// optimistic concurrency: two invoices can never take the same number, and a
// rolled-back transaction takes none, so the series has no gaps.
type Customer struct {
	ID       string
	Invoices int64            // invoices numbered so far
	Credit   map[string]int64 // currency → credit balance (≥ 0), minor units
	Version  int64
}

// InvoiceIssued numbers an invoice in the customer's series and moves
// CreditApplied out of the balance (a negative CreditApplied, from a credit
// invoice, adds to it). Balance is the balance in Currency afterwards.
type InvoiceIssued struct {
	CustomerID    string    `json:"customer_id"`
	InvoiceID     string    `json:"invoice_id"`
	Sequence      int64     `json:"sequence"`
	Number        string    `json:"number"`
	Currency      string    `json:"currency"`
	CreditApplied int64     `json:"credit_applied"`
	Balance       int64     `json:"balance"`
	IssuedAt      time.Time `json:"issued_at"`
}

// CreditGranted adds Amount (> 0) to the balance: the credit a voided invoice
// had used, given back. Balance is the balance in Currency afterwards.
type CreditGranted struct {
	CustomerID string    `json:"customer_id"`
	InvoiceID  string    `json:"invoice_id"`
	Currency   string    `json:"currency"`
	Amount     int64     `json:"amount"`
	Balance    int64     `json:"balance"`
	Reason     string    `json:"reason"`
	GrantedAt  time.Time `json:"granted_at"`
}

func (InvoiceIssued) EventType() string { return "customer.invoice_issued" }
func (CreditGranted) EventType() string { return "customer.credit_granted" }

func (e InvoiceIssued) OccurredAt() time.Time { return e.IssuedAt }
func (e CreditGranted) OccurredAt() time.Time { return e.GrantedAt }

// EvolveCustomer applies one customer event; other values change nothing.
func EvolveCustomer(c Customer, e Event) Customer {
	switch e := e.(type) {
	case InvoiceIssued:
		c = c.withBalance(e.CustomerID, e.Currency, e.Balance)
		c.Invoices = e.Sequence
	case CreditGranted:
		c = c.withBalance(e.CustomerID, e.Currency, e.Balance)
	default:
		return c
	}
	c.Version++
	return c
}

func (c Customer) withBalance(id, currency string, balance int64) Customer {
	c.ID = id
	c.Credit = maps.Clone(c.Credit)
	if c.Credit == nil {
		c.Credit = map[string]int64{}
	}
	c.Credit[currency] = balance
	return c
}

// InvoiceRequest is what an invoice is for, before it is numbered and the
// customer's credit applied.
type InvoiceRequest struct {
	InvoiceID      string
	SubscriptionID string
	CustomerID     string
	Currency       string
	Reason         InvoiceReason
	Lines          []InvoiceLine
	PeriodStart    time.Time
	PeriodEnd      time.Time
	UpgradeID      string
}

// IssueInvoice numbers r in c's series and applies c's credit: as much of the
// balance as the subtotal takes, or, for a negative subtotal, the whole
// credit added to the balance. It returns the customer's event and the
// invoice's, which must be appended in one transaction.
func IssueInvoice(c Customer, r InvoiceRequest, now time.Time) (InvoiceIssued, InvoiceCreated, error) {
	now = now.UTC().Truncate(time.Second)
	if c.ID != "" && c.ID != r.CustomerID {
		return InvoiceIssued{}, InvoiceCreated{}, fmt.Errorf("issue invoice: customer %q cannot number an invoice of %q", c.ID, r.CustomerID)
	}
	var subtotal int64
	for _, l := range r.Lines {
		subtotal += l.Amount
	}
	balance := c.Credit[r.Currency]
	applied := min(balance, subtotal) // a credit (subtotal < 0) is all applied, to the balance
	seq := c.Invoices + 1
	number := InvoiceNumber(r.CustomerID, seq)
	issued := InvoiceIssued{CustomerID: r.CustomerID, InvoiceID: r.InvoiceID, Sequence: seq, Number: number,
		Currency: r.Currency, CreditApplied: applied, Balance: balance - applied, IssuedAt: now}
	created := InvoiceCreated{InvoiceID: r.InvoiceID, Number: number, SubscriptionID: r.SubscriptionID,
		CustomerID: r.CustomerID, Currency: r.Currency, Reason: r.Reason, Lines: r.Lines,
		Subtotal: subtotal, CreditApplied: applied, Total: subtotal - applied,
		PeriodStart: r.PeriodStart, PeriodEnd: r.PeriodEnd, UpgradeID: r.UpgradeID, CreatedAt: now}
	return issued, created, nil
}

// ReturnCredit gives back the credit a voided invoice used, if any.
func ReturnCredit(c Customer, inv Invoice, now time.Time) (CreditGranted, bool) {
	if inv.CreditApplied <= 0 {
		return CreditGranted{}, false
	}
	balance := c.Credit[inv.Currency] + inv.CreditApplied
	return CreditGranted{CustomerID: inv.CustomerID, InvoiceID: inv.InvoiceID, Currency: inv.Currency,
		Amount: inv.CreditApplied, Balance: balance, Reason: "invoice_voided",
		GrantedAt: now.UTC().Truncate(time.Second)}, true
}

// InvoiceNumber is the seq-th number of a customer's series: a prefix
// derived from the customer id (8 hex digits, stable and opaque, as customer
// ids may be long or private) and the sequence, e.g. "3F2A9C1B-0007".
func InvoiceNumber(customerID string, seq int64) string {
	sum := sha256.Sum256([]byte(customerID))
	return fmt.Sprintf("%s-%04d", strings.ToUpper(hex.EncodeToString(sum[:4])), seq)
}
