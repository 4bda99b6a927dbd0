package domain_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
)

// FuzzBilling runs a program of up to 64 steps, read from the fuzzer's bytes, against one
// customer's stream and the invoices it numbers, through the invoice and customer deciders
// (IssueInvoice, RecordPayment, ReturnCredit): invoices of charges and of credits in two
// currencies, for this customer and another, then payments succeeding, declining or answered
// oddly, with attempt numbers in and out of order, under four dunning policies, and voids.
// Properties:
//   - no decider panics; a refusal comes with no event and leaves the state as it was;
//   - an invoice's numbers add up: Total = Subtotal − CreditApplied, Total ≥ 0, a credit
//     invoice (Subtotal < 0) puts all of it on the balance, otherwise as much credit as the
//     subtotal takes is applied; the customer's event and the invoice's agree;
//   - the credit ledger balances, per currency: credit applied + balance remaining = credit
//     granted (credit invoices and credit given back), and the balance is never negative;
//   - numbering is gapless per customer: the n-th invoice is sequence n, numbers never repeat;
//   - payments: only an open invoice takes one; attempts count up by one; a decline is retried
//     exactly as the policy says (never for a saga's invoice), a success pays the invoice;
//   - every event is dated now (UTC, whole seconds) and survives the store's JSON round trip;
//     replaying each stream gives the state built step by step.
//
// The upgrade saga's decisions are made in internal/billing, not in domain; its one pure
// function, PaidChange, is checked by FuzzDecide on every decided change.
func FuzzBilling(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzBilling", billingSeeds())
	f.Fuzz(func(t *testing.T, program []byte) {
		r := &programReader{data: program}
		policy := billingPolicies[int(r.byte())%len(billingPolicies)]
		now := decideBases[int(r.byte())%len(decideBases)]
		var (
			customer        domain.Customer
			customerHistory []domain.Event
			invoices        []domain.Invoice
			invoiceHistory  [][]domain.Event
			numbers         = map[string]bool{}
			in              = map[string]int64{} // credit granted, per currency
			out             = map[string]int64{} // credit applied, per currency
		)
		for step := 0; step < 64 && !r.done(); step++ {
			now = r.advance(now, domain.Subscription{})
			at := now.UTC().Truncate(time.Second)
			checkDated := func(where string, e domain.Event) {
				t.Helper()
				checkPersistable(t, where, e)
				if !e.OccurredAt().Equal(at) || e.OccurredAt().Location() != time.UTC {
					t.Errorf("%s: %s occurred at %s, want %s (UTC, whole seconds)", where, e.EventType(), e.OccurredAt(), at)
				}
			}
			switch op := r.byte() % 3; {
			case op == 0 || len(invoices) == 0: // issue an invoice
				req := r.invoiceRequest(len(invoices))
				where := fmt.Sprintf("step %d: IssueInvoice(%+v, %+v)", step, customer, req)
				before := customer.Credit[req.Currency]
				issued, created, err := domain.IssueInvoice(customer, req, now)
				if err != nil {
					if customer.ID == "" || customer.ID == req.CustomerID {
						t.Fatalf("%s = %v; the customer's own invoice must be issued", where, err)
					}
					if !reflect.DeepEqual(issued, domain.InvoiceIssued{}) || !reflect.DeepEqual(created, domain.InvoiceCreated{}) {
						t.Fatalf("%s = %v with events", where, err)
					}
					continue
				}
				if customer.ID != "" && customer.ID != req.CustomerID {
					t.Fatalf("%s numbered another customer's invoice in this customer's series", where)
				}
				checkIssued(t, where, customer, req, before, issued, created)
				checkDated(where, issued)
				checkDated(where, created)
				if numbers[issued.Number] {
					t.Errorf("%s: number %s given twice", where, issued.Number)
				}
				numbers[issued.Number] = true
				if created.CreditApplied < 0 {
					in[req.Currency] -= created.CreditApplied
				} else {
					out[req.Currency] += created.CreditApplied
				}
				next := domain.EvolveCustomer(customer, issued)
				if next.Version != customer.Version+1 || next.Invoices != int64(len(invoices))+1 {
					t.Errorf("%s: the customer went from version %d, %d invoices to %d, %d", where, customer.Version, customer.Invoices, next.Version, next.Invoices)
				}
				customer = next
				customerHistory = append(customerHistory, issued)
				invoices = append(invoices, domain.EvolveInvoice(domain.Invoice{}, created))
				invoiceHistory = append(invoiceHistory, []domain.Event{created})
			case op == 1: // record a payment attempt
				k := int(r.byte()) % len(invoices)
				inv := invoices[k]
				charge, attempt := r.charge(inv), r.attempt(inv)
				where := fmt.Sprintf("step %d: RecordPayment(invoice %d %s attempts=%d, %+v, %d, %+v, %s)", step, k, inv.Status, inv.Attempts, charge, attempt, policy, now)
				e, err := recordPayment(inv, charge, attempt, policy, now)
				if err != nil {
					if e != nil {
						t.Fatalf("%s = %v with an event", where, err)
					}
					var order *domain.AttemptOrderError
					switch {
					case inv.Status != domain.InvoiceOpen:
						if !errors.Is(err, domain.ErrInvoiceNotOpen) {
							t.Errorf("%s = %v, want ErrInvoiceNotOpen", where, err)
						}
					case attempt != inv.Attempts+1:
						if !errors.As(err, &order) || order.Attempt != attempt || order.Next != inv.Attempts+1 {
							t.Errorf("%s = %v, want *AttemptOrderError", where, err)
						}
					default:
						t.Errorf("%s = %v; the next attempt on an open invoice must be recorded", where, err)
					}
					continue
				}
				checkPayment(t, where, inv, charge, attempt, policy, at, e)
				checkDated(where, e)
				invoices[k] = domain.EvolveInvoice(inv, e)
				invoiceHistory[k] = append(invoiceHistory[k], e)
			default: // void an invoice and give its credit back, as internal/billing does
				k := int(r.byte()) % len(invoices)
				inv := invoices[k]
				if inv.Status == domain.InvoiceVoid {
					continue // voided once: the saga that voids it owns it
				}
				where := fmt.Sprintf("step %d: void invoice %d (%s, credit applied %d)", step, k, inv.Status, inv.CreditApplied)
				voided := domain.InvoiceVoided{Reason: "fuzz", VoidedAt: at}
				inv = domain.EvolveInvoice(inv, voided)
				invoices[k] = inv
				invoiceHistory[k] = append(invoiceHistory[k], voided)
				grant, ok := domain.ReturnCredit(customer, inv, now)
				if ok != (inv.CreditApplied > 0) {
					t.Errorf("%s: ReturnCredit gave %t", where, ok)
				}
				if !ok {
					continue
				}
				checkDated(where, grant)
				if grant.Amount != inv.CreditApplied || grant.Currency != inv.Currency || grant.InvoiceID != inv.InvoiceID ||
					grant.CustomerID != inv.CustomerID || grant.Balance != customer.Credit[inv.Currency]+inv.CreditApplied {
					t.Errorf("%s: ReturnCredit = %+v, balance was %d", where, grant, customer.Credit[inv.Currency])
				}
				in[inv.Currency] += grant.Amount
				customer = domain.EvolveCustomer(customer, grant)
				customerHistory = append(customerHistory, grant)
			}
			checkLedger(t, fmt.Sprintf("step %d", step), customer, in, out)
		}
		if replayed := foldCustomer(customerHistory); !reflect.DeepEqual(replayed, customer) {
			t.Errorf("replaying the customer gives %+v, step by step gave %+v", replayed, customer)
		}
		for k, history := range invoiceHistory {
			var replayed domain.Invoice
			for _, e := range history {
				replayed = domain.EvolveInvoice(replayed, e)
			}
			if !reflect.DeepEqual(replayed, invoices[k]) {
				t.Errorf("replaying invoice %d gives %+v, step by step gave %+v", k, replayed, invoices[k])
			}
		}
	})
}

// recordPayment turns a panic into a failure that names the input.
func recordPayment(inv domain.Invoice, c domain.Charge, attempt int, p domain.DunningPolicy, now time.Time) (e domain.Event, err error) {
	defer func() {
		if v := recover(); v != nil {
			panic(fmt.Sprintf("RecordPayment(attempts=%d, attempt %d, retry days %v) panicked: %v", inv.Attempts, attempt, p.RetryDays, v))
		}
	}()
	return domain.RecordPayment(inv, c, attempt, p, now)
}

// billingPolicies: the default, one that marks unpaid, one that never retries, one retry.
var billingPolicies = []domain.DunningPolicy{
	domain.DefaultDunningPolicy,
	{RetryDays: []int{1, 3, 5}, MarkUnpaid: true},
	{},
	{RetryDays: []int{7}},
}

// invoiceRequest reads an invoice request: a currency, up to two lines (an invoice is a
// period's line, or a proration's credit and charge, so no more), each amount within one
// line's bounds (MaxUnitAmount × MaxSeats), for this customer or another, collected by
// dunning or by an upgrade saga.
func (r *programReader) invoiceRequest(n int) domain.InvoiceRequest {
	req := domain.InvoiceRequest{InvoiceID: fmt.Sprintf("inv_%d", n), SubscriptionID: "sub_1", CustomerID: "cus_1",
		Currency: "USD", Reason: domain.InvoiceForCycle}
	flags := r.byte()
	if flags&1 != 0 {
		req.Currency = "EUR"
	}
	if flags&2 != 0 {
		req.CustomerID = "cus_2"
	}
	if flags&4 != 0 {
		req.UpgradeID, req.Reason = "upg_1", domain.InvoiceForUpdate
	}
	for range int(flags>>3) % 3 {
		req.Lines = append(req.Lines, domain.InvoiceLine{Amount: r.amount(), Quantity: 1, Proration: true})
	}
	return req
}

// amount is a line amount: zero, a cent, small, the largest either way, or any in between.
func (r *programReader) amount() int64 {
	const most = domain.MaxUnitAmount * domain.MaxSeats
	switch r.byte() % 8 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return -1
	case 3:
		return most
	case 4:
		return -most
	case 5:
		return int64(r.byte()) * 100
	case 6:
		return -int64(r.byte()) * 100
	}
	return int64(r.uint64()%(2*most+1)) - most
}

// charge is a gateway's answer: paid in full, declined, paid another amount, or a status it
// does not document.
func (r *programReader) charge(inv domain.Invoice) domain.Charge {
	c := domain.Charge{ID: "ch_1", Status: domain.ChargeSucceeded, Amount: inv.Total, Currency: inv.Currency}
	switch r.byte() % 4 {
	case 1:
		c.ID, c.Status, c.Amount = "", domain.ChargeDeclined, 0
		c.DeclineCode, c.DeclineMessage = domain.DeclineInsufficientFunds, "Insufficient funds."
	case 2:
		c.Amount = inv.Total - 1
	case 3:
		c.Status = "pending"
	}
	return c
}

// attempt is the attempt number: mostly the next one, else zero, negative, a repeat, a skip,
// or the largest int.
func (r *programReader) attempt(inv domain.Invoice) int {
	switch r.byte() % 8 {
	case 1:
		return 0
	case 2:
		return -1
	case 3:
		return inv.Attempts
	case 4:
		return inv.Attempts + 2
	case 5:
		return math.MaxInt
	}
	return inv.Attempts + 1
}

// checkIssued: numbering and credit of one issued invoice.
func checkIssued(t *testing.T, where string, c domain.Customer, req domain.InvoiceRequest, balance int64,
	issued domain.InvoiceIssued, created domain.InvoiceCreated) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s = %+v, %+v: %s", where, issued, created, fmt.Sprintf(format, args...))
	}
	var subtotal int64
	for _, l := range req.Lines {
		subtotal += l.Amount
	}
	wantApplied := subtotal // a credit goes to the balance whole
	if subtotal >= 0 {
		wantApplied = min(balance, subtotal)
	}
	switch {
	case issued.Sequence != c.Invoices+1 || issued.Number != domain.InvoiceNumber(req.CustomerID, issued.Sequence):
		fail("sequence %d, number %s after %d invoices", issued.Sequence, issued.Number, c.Invoices)
	case created.Subtotal != subtotal || created.CreditApplied != wantApplied || created.Total != subtotal-wantApplied || created.Total < 0:
		fail("subtotal %d, balance %d: want credit applied %d and total %d ≥ 0", subtotal, balance, wantApplied, subtotal-wantApplied)
	case issued.Balance != balance-wantApplied || issued.Balance < 0:
		fail("balance %d → %d, want %d ≥ 0", balance, issued.Balance, balance-wantApplied)
	case issued.CreditApplied != created.CreditApplied || issued.Number != created.Number || issued.InvoiceID != created.InvoiceID ||
		issued.InvoiceID != req.InvoiceID || issued.Currency != req.Currency || created.Currency != req.Currency ||
		issued.CustomerID != req.CustomerID || created.CustomerID != req.CustomerID || created.UpgradeID != req.UpgradeID:
		fail("the customer's event and the invoice's disagree with each other or the request")
	}
}

// checkPayment: what a recorded attempt says, and what it does to the invoice.
func checkPayment(t *testing.T, where string, inv domain.Invoice, c domain.Charge, attempt int, p domain.DunningPolicy, at time.Time, e domain.Event) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s = %#v: %s", where, e, fmt.Sprintf(format, args...))
	}
	if inv.Status != domain.InvoiceOpen || attempt != inv.Attempts+1 {
		fail("recorded an attempt %d on a %s invoice after %d attempts", attempt, inv.Status, inv.Attempts)
	}
	after := domain.EvolveInvoice(inv, e)
	if after.Attempts != inv.Attempts+1 {
		fail("attempts went from %d to %d", inv.Attempts, after.Attempts)
	}
	switch e := e.(type) {
	case domain.InvoicePaymentSucceeded:
		if c.Status != domain.ChargeSucceeded || e.ChargeID != c.ID || e.Amount != c.Amount || after.Status != domain.InvoicePaid {
			fail("a %s charge recorded as a success leaving the invoice %s", c.Status, after.Status)
		}
	case domain.InvoicePaymentFailed:
		if c.Status == domain.ChargeSucceeded || e.DeclineCode != c.DeclineCode {
			fail("a %s charge recorded as a decline", c.Status)
		}
		first := inv.FirstFailedAt
		if attempt == 1 || first.IsZero() {
			first = at
		}
		switch {
		case inv.UpgradeID != "" || attempt > len(p.RetryDays):
			if e.NextAttemptAt != nil || after.Collectible() {
				fail("a retry at %v, but the saga owns the invoice or the retries ran out", e.NextAttemptAt)
			}
		case e.NextAttemptAt == nil || !e.NextAttemptAt.Equal(first.AddDate(0, 0, p.RetryDays[attempt-1])):
			fail("retry at %v, want %d days after the first failure %s", e.NextAttemptAt, p.RetryDays[attempt-1], first)
		case !after.Collectible():
			fail("a retry is due but the invoice is not collectible")
		}
		if after.Status != domain.InvoiceOpen {
			fail("a decline left the invoice %s", after.Status)
		}
	default:
		fail("a payment attempt is recorded as invoice.payment_succeeded or invoice.payment_failed")
	}
}

// checkLedger: per currency, credit applied + balance remaining = credit granted, and no
// balance is negative.
func checkLedger(t *testing.T, where string, c domain.Customer, in, out map[string]int64) {
	t.Helper()
	for _, cur := range []string{"USD", "EUR"} {
		if b := c.Credit[cur]; b < 0 || out[cur]+b != in[cur] {
			t.Errorf("%s: %s credit: applied %d + balance %d ≠ granted %d", where, cur, out[cur], b, in[cur])
		}
	}
	for cur, b := range c.Credit {
		if b < 0 {
			t.Errorf("%s: %s balance %d < 0", where, cur, b)
		}
	}
}

func foldCustomer(events []domain.Event) domain.Customer {
	var c domain.Customer
	for _, e := range events {
		c = domain.EvolveCustomer(c, e)
	}
	return c
}

// billingSeeds are programs: a policy byte (billingPolicies), a start byte (decideBases), then
// steps of how far the time moves (see advance), an operation (0 issue, 1 pay, 2 void) and its
// fields.
func billingSeeds() []fuzzcorpus.Seed {
	b := func(bytes ...byte) []byte { return bytes }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	const stay, plusDay = 0, 4
	const (
		eur, otherCustomer, upgrade = 1, 2, 4
		oneLine, twoLines           = 1 << 3, 2 << 3
		zero, cent, minusCent       = 0, 1, 2
		most, minusMost             = 3, 4
	)
	hundreds := func(n byte) []byte { return b(5, n) }
	minusHundreds := func(n byte) []byte { return b(6, n) }
	issue := func(flags byte, amounts ...[]byte) []byte { return cat(b(stay, 0, flags), cat(amounts...)) }
	const paid, declined, short, pending = 0, 1, 2, 3
	const next, attemptZero, attemptMinus, repeat, skip, maxInt = 0, 1, 2, 3, 4, 5
	pay := func(advance, invoice, charge, attempt byte) []byte { return b(advance, 1, invoice, charge, attempt) }
	void := func(invoice byte) []byte { return b(stay, 2, invoice) }
	return []fuzzcorpus.Seed{
		fuzzcorpus.S("empty", b()),
		fuzzcorpus.S("issue-and-pay", cat(b(0, 0), issue(oneLine, hundreds(49)), pay(stay, 0, paid, next), pay(stay, 0, paid, next))),
		fuzzcorpus.S("credit-then-charges", cat(b(0, 0),
			issue(twoLines, minusHundreds(200), hundreds(50)),           // a downgrade: 150.00 to the balance
			issue(oneLine, hundreds(49)), issue(oneLine, hundreds(200)), // credit pays one, part of the next
			issue(eur|oneLine, hundreds(10)),                   // no EUR credit
			issue(twoLines, b(cent), b(minusCent)), issue(0))), // nothing due: paid when issued
		fuzzcorpus.S("void-returns-credit", cat(b(0, 1), issue(oneLine, b(minusMost)), issue(oneLine, b(most)),
			void(1), void(1), issue(upgrade|oneLine, hundreds(3)), void(2), void(0))),
		fuzzcorpus.S("another-customer", cat(b(0, 0), issue(otherCustomer|oneLine, hundreds(1)), issue(oneLine, hundreds(1)),
			issue(otherCustomer|oneLine, hundreds(1)))),
		fuzzcorpus.S("dunning-default", cat(b(0, 0), issue(oneLine, hundreds(49)),
			pay(plusDay, 0, declined, next), pay(plusDay, 0, declined, next), pay(plusDay, 0, declined, next),
			pay(plusDay, 0, declined, next), pay(plusDay, 0, declined, next))),
		fuzzcorpus.S("dunning-no-retries", cat(b(2, 3), issue(oneLine, hundreds(1)), pay(stay, 0, declined, next), pay(stay, 0, paid, next))),
		fuzzcorpus.S("upgrade-invoice-declined", cat(b(1, 0), issue(upgrade|oneLine, hundreds(7)), pay(stay, 0, declined, next),
			pay(stay, 0, pending, next), pay(stay, 0, short, next))),
		// Regression: attempt 0 or below made RecordPayment panic (the policy's retries indexed
		// at -1), and a repeat or a skip was recorded, moving the attempt count.
		fuzzcorpus.S("attempts-out-of-order", cat(b(0, 0), issue(oneLine, hundreds(49)),
			pay(stay, 0, declined, attemptZero), pay(stay, 0, declined, attemptMinus), pay(stay, 0, declined, repeat),
			pay(stay, 0, declined, skip), pay(stay, 0, declined, maxInt), pay(plusDay, 0, declined, next), pay(stay, 0, declined, repeat))),
	}
}
