package billing

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

func TestYearOfMonthlyRenewalsFromJan31(t *testing.T) {
	e := newEnv(t)
	id := e.create("cus_year", "pro_monthly", 3, "pm_card_ok", 0)
	e.advance(start) // the first invoice is collected at once
	e.advance(start.AddDate(1, 0, 0))

	sub := e.subscription(id)
	invoices := e.invoices(id)
	if len(invoices) != 13 {
		t.Fatalf("got %d invoices, want 13 (the first period and 12 renewals)", len(invoices))
	}
	wantEnds := []string{"2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30", "2026-07-31",
		"2026-08-31", "2026-09-30", "2026-10-31", "2026-11-30", "2026-12-31", "2027-01-31", "2027-02-28"}
	var paid int64
	for i, inv := range invoices {
		want := sub.Plan.UnitAmount * 3
		if got := inv.PeriodEnd.Format("2006-01-02"); got != wantEnds[i] {
			t.Errorf("invoice %d covers a period ending %s, want %s", i+1, got, wantEnds[i])
		}
		if inv.Total != want || inv.Status != domain.InvoicePaid || inv.AmountPaid != want {
			t.Errorf("invoice %d: total %d, %s, paid %d; want %d paid in full", i+1, inv.Total, inv.Status, inv.AmountPaid, want)
		}
		if wantNumber := domain.InvoiceNumber("cus_year", int64(i+1)); inv.Number != wantNumber {
			t.Errorf("invoice %d is numbered %s, want %s", i+1, inv.Number, wantNumber)
		}
		wantReason := domain.InvoiceForCycle
		if i == 0 {
			wantReason = domain.InvoiceForCreate
		}
		if inv.Reason != wantReason {
			t.Errorf("invoice %d: reason %s, want %s", i+1, inv.Reason, wantReason)
		}
		paid += inv.AmountPaid
	}
	if got := e.charged("cus_year"); got != paid {
		t.Errorf("the gateway holds %d, the invoices say %d were paid", got, paid)
	}
	if sub.Status != domain.StatusActive || sub.PeriodEnd.Format("2006-01-02") != "2027-02-28" || sub.MRR() != sub.Plan.UnitAmount*3 {
		t.Errorf("after a year: %s until %s, MRR %d", sub.Status, sub.PeriodEnd, sub.MRR())
	}
	// Renewals are dated at their period boundary, whatever the clock said when they ran.
	events, _ := eventstore.Load(context.Background(), e.db, id, eventstore.LoadOptions{})
	for _, ev := range events {
		if ev.Type == "subscription.renewed" && ev.OccurredAt.Hour() != 10 {
			t.Errorf("renewal dated %s, want at the 10:00 boundary", ev.OccurredAt)
		}
	}
}

func TestRenewalFromTwoProcessesAtTheSameInstantHappensOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var subs []uuid.UUID
	for i := range 4 {
		// Two customers with two subscriptions each: renewals also race on the customer's series.
		subs = append(subs, e.create(fmt.Sprintf("cus_race_%d", i%2), "starter_monthly", 2, "pm_card_ok", 0))
	}
	e.advance(start)
	e.clock.Set(start.AddDate(0, 1, 0))

	other, err := pgxpool.New(ctx, e.db.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	processes := []*Service{e.svc, e.process(other)}
	var wg sync.WaitGroup
	for _, p := range processes {
		for _, id := range subs {
			for range 3 {
				wg.Go(func() {
					if err := p.Renew(ctx, id); err != nil {
						t.Errorf("renew %s: %v", id, err)
					}
				})
			}
		}
		wg.Go(func() {
			if _, err := p.RunDue(ctx); err != nil {
				t.Errorf("run due: %v", err)
			}
		})
	}
	wg.Wait()
	e.advance(e.clock.Now()) // collect whatever a lease held back

	for _, id := range subs {
		if n := countOf(e.eventTypes(id), "subscription.renewed"); n != 1 {
			t.Errorf("%s renewed %d times, want once", id, n)
		}
		invoices := e.invoices(id)
		if len(invoices) != 2 || invoices[1].Reason != domain.InvoiceForCycle || invoices[1].Status != domain.InvoicePaid {
			t.Errorf("%s has %d invoices, want the first and one paid renewal invoice", id, len(invoices))
		}
	}
	for c := range 2 {
		customer := fmt.Sprintf("cus_race_%d", c)
		got, err := eventstore.LoadCustomer(ctx, e.db, customer)
		if err != nil {
			t.Fatal(err)
		}
		if got.Invoices != 4 {
			t.Errorf("%s numbered %d invoices, want 4", customer, got.Invoices)
		}
		var numbers []string
		for _, id := range subs {
			for _, inv := range e.invoices(id) {
				if inv.CustomerID == customer {
					numbers = append(numbers, inv.Number)
				}
			}
		}
		slices.Sort(numbers)
		for i, n := range numbers {
			if want := domain.InvoiceNumber(customer, int64(i+1)); n != want {
				t.Errorf("%s numbers %v: want %s at %d (no gaps, no duplicates)", customer, numbers, want, i)
				break
			}
		}
	}
}

func TestTrialConvertsAtItsEnd(t *testing.T) {
	e := newEnv(t)
	id := e.create("cus_trial", "pro_monthly", 2, "pm_card_ok", 14)
	trialEnd := start.AddDate(0, 0, 14)

	e.advance(trialEnd.Add(-domain.TrialReminder - time.Second))
	if got := e.eventTypes(id); slices.Contains(got, "subscription.trial_will_end") {
		t.Fatalf("reminder before it was due: %v", got)
	}
	e.advance(trialEnd.Add(-domain.TrialReminder))
	if got := countOf(e.eventTypes(id), "subscription.trial_will_end"); got != 1 {
		t.Fatalf("trial_will_end recorded %d times, want once", got)
	}
	if len(e.invoices(id)) != 0 {
		t.Fatal("a trial was invoiced")
	}
	e.advance(trialEnd)
	sub := e.subscription(id)
	invoices := e.invoices(id)
	if sub.Status != domain.StatusActive || !sub.PeriodStart.Equal(trialEnd) || !sub.PeriodEnd.Equal(trialEnd.AddDate(0, 1, 0)) {
		t.Errorf("after the trial: %s, period %s – %s", sub.Status, sub.PeriodStart, sub.PeriodEnd)
	}
	if len(invoices) != 1 || invoices[0].Status != domain.InvoicePaid || invoices[0].Total != sub.Plan.UnitAmount*2 {
		t.Fatalf("invoices after conversion: %+v", invoices)
	}
	if got := e.charged("cus_trial"); got != invoices[0].Total {
		t.Errorf("charged %d, want %d", got, invoices[0].Total)
	}
	if got := countOf(e.eventTypes(id), "subscription.trial_will_end"); got != 1 {
		t.Errorf("trial_will_end recorded %d times, want once", got)
	}
}

func TestTrialWithoutPaymentMethod(t *testing.T) {
	t.Run("goes past due by default", func(t *testing.T) {
		e := newEnv(t)
		id := e.create("cus_nopm", "pro_monthly", 1, "", 7)
		e.advance(start.AddDate(0, 0, 7))
		sub := e.subscription(id)
		invoices := e.invoices(id)
		if sub.Status != domain.StatusPastDue || len(invoices) != 1 || invoices[0].Status != domain.InvoiceOpen {
			t.Fatalf("got %s with invoices %+v; want past_due with one open invoice", sub.Status, invoices)
		}
		if invoices[0].Attempts != 1 || invoices[0].NextAttemptAt.IsZero() {
			t.Errorf("invoice attempts %d, next %s: want a retry scheduled", invoices[0].Attempts, invoices[0].NextAttemptAt)
		}
	})
	t.Run("is canceled when configured", func(t *testing.T) {
		e := newEnv(t)
		e.svc.cancelTrl = true
		id := e.create("cus_nopm", "pro_monthly", 1, "", 7)
		e.advance(start.AddDate(0, 0, 8))
		sub := e.subscription(id)
		if sub.Status != domain.StatusCanceled || len(e.invoices(id)) != 0 {
			t.Fatalf("got %s with %d invoices; want canceled, uninvoiced", sub.Status, len(e.invoices(id)))
		}
		events, _ := eventstore.Load(context.Background(), e.db, id, eventstore.LoadOptions{})
		last, _ := eventstore.DecodeEvent(events[len(events)-1])
		if c, ok := last.(domain.Canceled); !ok || c.Reason != domain.CancelReasonTrialEnded {
			t.Errorf("last event %#v, want canceled for %s", last, domain.CancelReasonTrialEnded)
		}
	})
}

func TestDunning(t *testing.T) {
	t.Run("cancels for nonpayment after the last retry", func(t *testing.T) {
		e := newEnv(t)
		id := e.create("cus_dun", "pro_monthly", 1, "pm_card_declined", 0)
		e.advance(start)
		if s := e.subscription(id).Status; s != domain.StatusPastDue {
			t.Fatalf("after a declined first charge: %s, want past_due", s)
		}
		for _, day := range []int{1, 3} {
			e.advance(start.AddDate(0, 0, day))
			if inv := e.invoices(id)[0]; inv.Attempts != 2+slices.Index([]int{1, 3}, day) {
				t.Errorf("day %d: %d attempts", day, inv.Attempts)
			}
		}
		e.advance(start.AddDate(0, 0, 5).Add(-time.Second))
		if s := e.subscription(id).Status; s != domain.StatusPastDue {
			t.Fatalf("before the last retry: %s", s)
		}
		e.advance(start.AddDate(0, 0, 5))
		sub, inv := e.subscription(id), e.invoices(id)[0]
		if sub.Status != domain.StatusCanceled || inv.Status != domain.InvoiceUncollectible || inv.Attempts != 4 {
			t.Fatalf("after the last retry: %s, invoice %s after %d attempts", sub.Status, inv.Status, inv.Attempts)
		}
		if got := e.charged("cus_dun"); got != 0 {
			t.Errorf("charged %d for declined attempts", got)
		}
		if sub.MRR() != 0 {
			t.Errorf("canceled subscription has MRR %d", sub.MRR())
		}
		e.advance(start.AddDate(0, 3, 0))
		if n := len(e.invoices(id)); n != 1 {
			t.Errorf("a canceled subscription got %d invoices", n)
		}
	})
	t.Run("marks unpaid when configured", func(t *testing.T) {
		e := newEnv(t)
		e.svc.dunning = domain.DunningPolicy{RetryDays: []int{2}, MarkUnpaid: true}
		id := e.create("cus_unpaid", "starter_monthly", 1, "pm_card_insufficient_funds", 0)
		e.advance(start.AddDate(0, 0, 2))
		if s := e.subscription(id).Status; s != domain.StatusUnpaid {
			t.Fatalf("got %s, want unpaid", s)
		}
	})
	t.Run("recovers when a retry succeeds", func(t *testing.T) {
		e := newEnv(t)
		id := e.create("cus_recover", "pro_monthly", 1, "pm_card_declined", 0)
		e.advance(start)
		e.command(id, domain.ChangePaymentMethod{PaymentMethod: "pm_card_ok"})
		e.advance(start.AddDate(0, 0, 1))
		sub, inv := e.subscription(id), e.invoices(id)[0]
		if sub.Status != domain.StatusActive || inv.Status != domain.InvoicePaid || inv.Attempts != 2 {
			t.Fatalf("after the retry: %s, invoice %s after %d attempts", sub.Status, inv.Status, inv.Attempts)
		}
		if got := e.charged("cus_recover"); got != inv.Total {
			t.Errorf("charged %d, want %d", got, inv.Total)
		}
		types := e.eventTypes(id)
		if !slices.Contains(types, "subscription.past_due") || !slices.Contains(types, "subscription.payment_recovered") {
			t.Errorf("history %v lacks past_due then payment_recovered", types)
		}
	})
}

func TestDowngradeCreditIsConsumedByLaterInvoices(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.create("cus_credit", "business_monthly", 5, "pm_card_ok", 0)
	e.advance(start)
	e.clock.Set(start.AddDate(0, 0, 10))
	e.command(id, domain.ChangeSeats{Seats: 1})

	invoices := e.invoices(id)
	credit := invoices[1]
	if credit.Subtotal >= 0 || credit.Total != 0 || credit.CreditApplied != credit.Subtotal || credit.Status != domain.InvoicePaid {
		t.Fatalf("credit invoice: %+v", credit)
	}
	customer, _ := eventstore.LoadCustomer(ctx, e.db, "cus_credit")
	balance := customer.Credit["USD"]
	if balance != -credit.Subtotal {
		t.Fatalf("balance %d, want the credit %d", balance, -credit.Subtotal)
	}

	e.advance(start.AddDate(0, 3, 0))
	customer, _ = eventstore.LoadCustomer(ctx, e.db, "cus_credit")
	var applied, paid int64
	for _, inv := range e.invoices(id)[2:] {
		if inv.CreditApplied < 0 || inv.Total != inv.Subtotal-inv.CreditApplied || inv.Status != domain.InvoicePaid {
			t.Errorf("renewal invoice %s: subtotal %d credit %d total %d %s", inv.Number, inv.Subtotal, inv.CreditApplied, inv.Total, inv.Status)
		}
		applied += inv.CreditApplied
		paid += inv.AmountPaid
	}
	if applied+customer.Credit["USD"] != balance {
		t.Errorf("credit %d = applied %d + left %d does not add up", balance, applied, customer.Credit["USD"])
	}
	if customer.Credit["USD"] < 0 {
		t.Errorf("negative balance %d", customer.Credit["USD"])
	}
	if got := e.charged("cus_credit"); got != invoices[0].AmountPaid+paid {
		t.Errorf("charged %d, want %d", got, invoices[0].AmountPaid+paid)
	}
}

func countOf(types []string, typ string) int {
	n := 0
	for _, t := range types {
		if t == typ {
			n++
		}
	}
	return n
}

func TestDowngradeAtPeriodEndChargesNothingNowAndLessAtRenewal(t *testing.T) {
	e := newEnv(t)
	id := e.create("cus_down", "business_monthly", 2, "pm_card_ok", 0)
	e.advance(start.AddDate(0, 0, 3))
	plan, _ := domain.DefaultCatalog().Plan("starter_monthly")
	if up := e.command(id, domain.ChangePlan{Plan: plan}); up != uuid.Nil {
		t.Fatal("a downgrade started an upgrade saga")
	}
	if n := len(e.invoices(id)); n != 1 {
		t.Fatalf("%d invoices after scheduling a downgrade, want only the first", n)
	}
	e.advance(start.AddDate(0, 1, 0))
	sub, invoices := e.subscription(id), e.invoices(id)
	if sub.Plan.PlanID != "starter_monthly" || sub.ScheduledChange != nil || len(invoices) != 2 {
		t.Fatalf("after the renewal: %s, scheduled %v, %d invoices", sub.Plan.PlanID, sub.ScheduledChange, len(invoices))
	}
	if renewal := invoices[1]; renewal.Total != plan.UnitAmount*2 || renewal.Lines[0].PlanID != "starter_monthly" || renewal.Status != domain.InvoicePaid {
		t.Errorf("renewal invoice %+v, want 2 × %d on the new plan", renewal, plan.UnitAmount)
	}
}

// TestRunDueRecordsWorkInDueOrder: two subscriptions renewing a day apart, the clock moved three
// months at once. RunDue claims several due rows at a time, yet each renewal's invoice (due at
// once) is collected before the other subscription's renewal a day later: the whole log after
// the move is in the order of the times its events are dated.
func TestRunDueRecordsWorkInDueOrder(t *testing.T) {
	e := newEnv(t)
	e.create("cus_order_a", "pro_monthly", 1, "pm_card_ok", 0)
	e.advance(start)
	e.clock.Set(start.AddDate(0, 0, 1))
	e.create("cus_order_b", "pro_monthly", 1, "pm_card_ok", 0)
	e.advance(start.AddDate(0, 0, 1))
	var from int64
	if err := e.db.QueryRow(context.Background(), `SELECT max(global_position) FROM events`).Scan(&from); err != nil {
		t.Fatal(err)
	}
	e.advance(start.AddDate(0, 3, 0))

	rows, err := e.db.Query(context.Background(), `SELECT type, occurred_at FROM events
		WHERE global_position > $1 ORDER BY global_position`, from)
	if err != nil {
		t.Fatal(err)
	}
	var prevType string
	var prev time.Time
	var typ string
	var at time.Time
	n := 0
	if _, err := pgx.ForEachRow(rows, []any{&typ, &at}, func() error {
		if at.Before(prev) {
			t.Errorf("%s dated %s recorded after %s dated %s", typ, at, prevType, prev)
		}
		prevType, prev = typ, at
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n < 12 { // per subscription and month at least renewed, invoice created and paid
		t.Errorf("%d events after the move, want at least 12", n)
	}
}
