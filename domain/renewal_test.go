package domain

import (
	"errors"
	"testing"
	"time"
)

func TestRenewalsKeepTheAnchorsDay(t *testing.T) {
	anchor := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	s := Fold([]Event{SubscriptionCreated{SubscriptionID: "s", CustomerID: "c", Plan: testTerms(IntervalMonth), Seats: 1,
		Status: StatusActive, PaymentMethod: "pm_card_ok", BillingAnchor: anchor, PeriodStart: anchor,
		PeriodEnd: AddInterval(anchor, IntervalMonth, 1), CreatedAt: anchor}})
	want := []string{"2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30", "2026-07-31", "2026-08-31",
		"2026-09-30", "2026-10-31", "2026-11-30", "2026-12-31", "2027-01-31", "2027-02-28", "2027-03-31"}
	for i, w := range want {
		events, err := Decide(s, Renew{PeriodEnd: s.PeriodEnd, InvoiceID: "inv"}, s.PeriodEnd)
		if err != nil {
			t.Fatalf("renewal %d: %v", i+1, err)
		}
		s = Evolve(s, events[0])
		if got := s.PeriodEnd.Format("2006-01-02"); got != w {
			t.Errorf("renewal %d: period ends %s, want %s", i+1, got, w)
		}
	}
}

func TestDecideRenew(t *testing.T) {
	start := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	end := AddInterval(start, IntervalMonth, 1)
	created := SubscriptionCreated{SubscriptionID: "s", CustomerID: "c", Plan: testTerms(IntervalMonth), Seats: 3,
		Status: StatusActive, PaymentMethod: "pm_card_ok", BillingAnchor: start, PeriodStart: start, PeriodEnd: end, CreatedAt: start}
	trialEnd := start.AddDate(0, 0, 14)
	trialing := created
	trialing.Status, trialing.TrialEnd, trialing.BillingAnchor, trialing.PeriodEnd, trialing.PaymentMethod = StatusTrialing, &trialEnd, trialEnd, trialEnd, ""
	cheap := testTerms(IntervalMonth)
	cheap.PlanID, cheap.UnitAmount = "cheap", 100
	yearly := testTerms(IntervalYear)
	yearly.PlanID = "cheap_yearly"

	tests := []struct {
		name    string
		history []Event
		cmd     Renew
		at      time.Time
		check   func(t *testing.T, s Subscription, events []Event)
		wantErr any
	}{
		{name: "renews on the next period", history: []Event{created}, cmd: Renew{PeriodEnd: end, InvoiceID: "i"}, at: end,
			check: func(t *testing.T, s Subscription, events []Event) {
				r := events[0].(Renewed)
				if !r.PeriodStart.Equal(end) || r.PeriodEnd.Format("2006-01-02") != "2026-03-31" || r.InvoiceID != "i" || s.Status != StatusActive {
					t.Errorf("renewed %+v to %s", r, s.Status)
				}
			}},
		{name: "a repeat is refused", history: []Event{created, Renewed{Plan: created.Plan, Seats: 3, BillingAnchor: start,
			PeriodStart: end, PeriodEnd: AddInterval(start, IntervalMonth, 2), InvoiceID: "i", RenewedAt: end}},
			cmd: Renew{PeriodEnd: end, InvoiceID: "j"}, at: end, wantErr: new(*AlreadyRenewedError)},
		{name: "not before the period ends", history: []Event{created}, cmd: Renew{PeriodEnd: end, InvoiceID: "i"},
			at: end.Add(-time.Second), wantErr: new(*NotDueError)},
		{name: "a scheduled downgrade takes effect", history: []Event{created,
			PlanChangeScheduled{Plan: cheap, Seats: 1, EffectiveAt: end, ScheduledAt: start.Add(time.Hour)}},
			cmd: Renew{PeriodEnd: end, InvoiceID: "i"}, at: end,
			check: func(t *testing.T, s Subscription, _ []Event) {
				if s.Plan.PlanID != "cheap" || s.Seats != 1 || s.ScheduledChange != nil || s.MRR() != 100 || !s.BillingAnchor.Equal(start) {
					t.Errorf("after the renewal: %s × %d, scheduled %v, MRR %d", s.Plan.PlanID, s.Seats, s.ScheduledChange, s.MRR())
				}
			}},
		{name: "a scheduled change of interval starts a new anchor", history: []Event{created,
			PlanChangeScheduled{Plan: yearly, Seats: 1, EffectiveAt: end, ScheduledAt: start.Add(time.Hour)}},
			cmd: Renew{PeriodEnd: end, InvoiceID: "i"}, at: end,
			check: func(t *testing.T, s Subscription, _ []Event) {
				if !s.BillingAnchor.Equal(end) || !s.PeriodEnd.Equal(end.AddDate(1, 0, 0)) {
					t.Errorf("anchor %s, period end %s", s.BillingAnchor, s.PeriodEnd)
				}
			}},
		{name: "a cancellation at period end takes effect instead", history: []Event{created,
			CancellationScheduled{CancelAt: end, RequestedAt: start.Add(time.Hour)}},
			cmd: Renew{PeriodEnd: end, InvoiceID: "i"}, at: end,
			check: func(t *testing.T, s Subscription, events []Event) {
				if c, ok := events[0].(Canceled); !ok || c.Reason != CancelReasonRequested || s.Status != StatusCanceled {
					t.Errorf("got %#v", events)
				}
			}},
		{name: "a trial converts", history: []Event{trialing, PaymentMethodChanged{PaymentMethod: "pm_card_ok", ChangedAt: start}},
			cmd: Renew{PeriodEnd: trialEnd, InvoiceID: "i"}, at: trialEnd,
			check: func(t *testing.T, s Subscription, _ []Event) {
				if s.Status != StatusActive || !s.PeriodStart.Equal(trialEnd) || !s.PeriodEnd.Equal(AddInterval(trialEnd, IntervalMonth, 1)) {
					t.Errorf("converted to %s, %s – %s", s.Status, s.PeriodStart, s.PeriodEnd)
				}
			}},
		{name: "a trial without a payment method converts by default", history: []Event{trialing},
			cmd: Renew{PeriodEnd: trialEnd, InvoiceID: "i"}, at: trialEnd,
			check: func(t *testing.T, s Subscription, _ []Event) {
				if s.Status != StatusActive {
					t.Errorf("status %s", s.Status)
				}
			}},
		{name: "or is canceled when configured", history: []Event{trialing},
			cmd: Renew{PeriodEnd: trialEnd, InvoiceID: "i", CancelTrialWithoutPaymentMethod: true}, at: trialEnd,
			check: func(t *testing.T, s Subscription, events []Event) {
				if c, ok := events[0].(Canceled); !ok || c.Reason != CancelReasonTrialEnded {
					t.Errorf("got %#v", events)
				}
			}},
		{name: "a paused subscription renews unbilled", history: []Event{created, Paused{PausedAt: start.Add(time.Hour)}},
			cmd: Renew{PeriodEnd: end, InvoiceID: "i"}, at: end,
			check: func(t *testing.T, s Subscription, events []Event) {
				if events[0].(Renewed).InvoiceID != "" || s.Status != StatusPaused || s.MRR() != 0 {
					t.Errorf("got %#v, %s", events, s.Status)
				}
			}},
		{name: "a canceled one does not renew", history: []Event{created, Canceled{CanceledAt: start.Add(time.Hour), Reason: "requested"}},
			cmd: Renew{PeriodEnd: end, InvoiceID: "i"}, at: end, wantErr: ErrSubscriptionCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Fold(tt.history)
			events, err := Decide(s, tt.cmd, tt.at)
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("Decide: %v", err)
				}
				for _, e := range events {
					s = Evolve(s, e)
				}
				tt.check(t, s, events)
			case error:
				if !errors.Is(err, want) || events != nil {
					t.Errorf("got %v, %v; want %v", events, err, want)
				}
			default:
				if !errors.As(err, want) || events != nil {
					t.Errorf("got %v, %v; want a %T", events, err, want)
				}
			}
		})
	}
}

func TestDunningDecisions(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	active := Fold([]Event{SubscriptionCreated{SubscriptionID: "s", CustomerID: "c", Plan: testTerms(IntervalMonth), Seats: 1,
		Status: StatusActive, BillingAnchor: start, PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0), CreatedAt: start}})
	at := start.Add(time.Hour)
	pastDue := mustDecide(t, active, MarkPastDue{InvoiceID: "i"}, at)
	if pastDue.Status != StatusPastDue || pastDue.MRR() == 0 {
		t.Errorf("past due: %s, MRR %d (past due still counts)", pastDue.Status, pastDue.MRR())
	}
	if _, err := Decide(pastDue, MarkPastDue{InvoiceID: "i"}, at); !errors.Is(err, ErrNoChange) {
		t.Errorf("past due twice: %v", err)
	}
	if s := mustDecide(t, pastDue, RecoverPayment{InvoiceID: "i"}, at); s.Status != StatusActive {
		t.Errorf("recovered to %s", s.Status)
	}
	if _, err := Decide(active, RecoverPayment{InvoiceID: "i"}, at); !errors.Is(err, ErrNoChange) {
		t.Errorf("recovering an active subscription: %v", err)
	}
	if s := mustDecide(t, pastDue, EndDunning{InvoiceID: "i"}, at); s.Status != StatusCanceled {
		t.Errorf("end of dunning: %s", s.Status)
	}
	unpaid := mustDecide(t, pastDue, EndDunning{InvoiceID: "i", MarkUnpaid: true}, at)
	if unpaid.Status != StatusUnpaid || unpaid.MRR() != 0 {
		t.Errorf("unpaid: %s, MRR %d", unpaid.Status, unpaid.MRR())
	}
	if _, err := Decide(unpaid, Renew{PeriodEnd: unpaid.PeriodEnd, InvoiceID: "i"}, unpaid.PeriodEnd); err == nil {
		t.Error("an unpaid subscription renewed")
	}
}

func TestRecordPaymentSchedulesRetriesFromTheFirstFailure(t *testing.T) {
	created := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	inv := EvolveInvoice(Invoice{}, InvoiceCreated{InvoiceID: "i", CustomerID: "c", Currency: "USD", Subtotal: 500, Total: 500, CreatedAt: created})
	declined := Charge{Status: ChargeDeclined, DeclineCode: DeclineCardDeclined}
	wantNext := []time.Time{created.AddDate(0, 0, 1), created.AddDate(0, 0, 3), created.AddDate(0, 0, 5)}
	at := created
	for attempt := 1; attempt <= 4; attempt++ {
		e, err := RecordPayment(inv, declined, attempt, DefaultDunningPolicy, at)
		if err != nil {
			t.Fatal(err)
		}
		f := e.(InvoicePaymentFailed)
		switch {
		case attempt <= 3 && (f.NextAttemptAt == nil || !f.NextAttemptAt.Equal(wantNext[attempt-1])):
			t.Errorf("attempt %d: next %v, want %s", attempt, f.NextAttemptAt, wantNext[attempt-1])
		case attempt == 4 && f.NextAttemptAt != nil:
			t.Errorf("attempt 4 scheduled another at %s", f.NextAttemptAt)
		}
		inv = EvolveInvoice(inv, f)
		if f.NextAttemptAt != nil {
			at = f.NextAttemptAt.Add(3 * time.Hour) // a late retry does not shift the schedule
		}
	}
	paid, _ := RecordPayment(EvolveInvoice(Invoice{}, InvoiceCreated{InvoiceID: "j", Total: 5, CreatedAt: created}),
		Charge{ID: "ch", Status: ChargeSucceeded, Amount: 5}, 1, DefaultDunningPolicy, created)
	if p := paid.(InvoicePaymentSucceeded); p.ChargeID != "ch" || p.Amount != 5 {
		t.Errorf("paid %+v", p)
	}
	if _, err := RecordPayment(EvolveInvoice(inv, InvoiceVoided{VoidedAt: at}), declined, 5, DefaultDunningPolicy, at); !errors.Is(err, ErrInvoiceNotOpen) {
		t.Errorf("payment on a void invoice: %v", err)
	}
}

func TestIssueInvoiceAppliesCreditExactly(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	line := func(amount int64) []InvoiceLine { return []InvoiceLine{{Amount: amount}} }
	issue := func(c Customer, amount int64, currency string) (Customer, InvoiceCreated) {
		t.Helper()
		issued, created, err := IssueInvoice(c, InvoiceRequest{InvoiceID: "i", CustomerID: "cus", Currency: currency, Lines: line(amount)}, now)
		if err != nil {
			t.Fatal(err)
		}
		if created.Total != created.Subtotal-created.CreditApplied || created.Total < 0 || issued.Number != created.Number {
			t.Errorf("invoice %+v does not add up", created)
		}
		return EvolveCustomer(c, issued), created
	}
	var c Customer
	c, credit := issue(c, -3000, "USD")
	if credit.Total != 0 || credit.CreditApplied != -3000 || c.Credit["USD"] != 3000 || credit.Number != InvoiceNumber("cus", 1) {
		t.Errorf("credit invoice %+v, balance %v", credit, c.Credit)
	}
	c, partly := issue(c, 1000, "USD")
	if partly.Total != 0 || partly.CreditApplied != 1000 || c.Credit["USD"] != 2000 {
		t.Errorf("covered by credit: %+v, balance %v", partly, c.Credit)
	}
	c, euro := issue(c, 700, "EUR")
	if euro.Total != 700 || euro.CreditApplied != 0 || c.Credit["USD"] != 2000 {
		t.Errorf("another currency used the credit: %+v", euro)
	}
	c, rest := issue(c, 2500, "USD")
	if rest.Total != 500 || rest.CreditApplied != 2000 || c.Credit["USD"] != 0 || c.Invoices != 4 || rest.Number != InvoiceNumber("cus", 4) {
		t.Errorf("the rest of the credit: %+v, balance %v, %d invoices", rest, c.Credit, c.Invoices)
	}
	back, ok := ReturnCredit(c, EvolveInvoice(Invoice{}, rest), now)
	if !ok || back.Amount != 2000 || back.Balance != 2000 {
		t.Errorf("voiding gives back %+v", back)
	}
	if _, ok := ReturnCredit(c, EvolveInvoice(Invoice{}, euro), now); ok {
		t.Error("an invoice that used no credit gave some back")
	}
}

func mustDecide(t *testing.T, s Subscription, c Command, at time.Time) Subscription {
	t.Helper()
	events, err := Decide(s, c, at)
	if err != nil {
		t.Fatalf("%T: %v", c, err)
	}
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s
}

func testTerms(iv Interval) PlanTerms {
	return PlanTerms{PlanID: "pro_" + string(iv), Name: "Pro", Interval: iv, UnitAmount: 4900, Currency: "USD", Features: []string{"api_access"}}
}
