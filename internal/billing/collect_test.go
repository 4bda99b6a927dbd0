package billing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/payments"
)

// TestCollectRecordsAnAttemptMadeBeforeACrash: a process charges an invoice's attempt and dies
// (or loses the database) before recording it, and the customer then changes the payment
// method. The attempt was made: the next process must record it as it was made. Making it
// again with the new method, under the same idempotency key, is refused by the gateway for
// good, which left the invoice open forever and the money taken unrecorded (found by the fault
// suite's PostgreSQL restarts).
func TestCollectRecordsAnAttemptMadeBeforeACrash(t *testing.T) {
	for _, tc := range []struct {
		name, before, after string
		wantPaid            bool
	}{
		{"charged, then a declining card", "pm_card_ok", "pm_card_declined", true},
		{"declined, then a paying card", "pm_card_declined", "pm_card_ok", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			id := e.create("cus_crash", "pro_monthly", 2, tc.before, 0)
			inv := e.invoices(id)[0]
			crashOnce(e.svc, "collect:charged")
			if err := e.svc.Collect(ctx, uuid.MustParse(inv.InvoiceID)); !errors.Is(err, errCrash) {
				t.Fatalf("the crash after charging did not happen: %v", err)
			}
			e.command(id, domain.ChangePaymentMethod{PaymentMethod: tc.after})

			if err := e.process(e.db).Collect(ctx, uuid.MustParse(inv.InvoiceID)); err != nil {
				t.Fatalf("collect after the crash: %v", err)
			}
			inv = e.invoices(id)[0]
			if inv.Attempts != 1 || (inv.Status == domain.InvoicePaid) != tc.wantPaid {
				t.Errorf("invoice %s after %d attempts; want attempt 1 recorded as made (paid %v)", inv.Status, inv.Attempts, tc.wantPaid)
			}
			if got := e.charged("cus_crash"); got != inv.AmountPaid {
				t.Errorf("the gateway charged %d, the invoice records %d paid", got, inv.AmountPaid)
			}
		})
	}
}

// TestLeaseBoundsHowLongTheWorkOfADeadProcessWaits: a process that took a due row and died holds
// it for its lease (Config.Lease); another process takes it over once the lease has run out,
// and not before.
func TestLeaseBoundsHowLongTheWorkOfADeadProcessWaits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const lease = 300 * time.Millisecond
	process := func() *Service {
		return New(Config{DB: e.db, Gateway: payments.NewSandbox(e.db), Clock: e.clock, Lease: lease})
	}
	dead, other := process(), process()
	id := e.create("cus_lease", "pro_monthly", 1, "pm_card_ok", 0) // its first invoice is due now
	if jobs, err := dead.claim(ctx, e.clock.Now(), dead.lease, 1); err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v, %v", jobs, err)
	}
	if n, err := other.RunDue(ctx); err != nil || n != 0 {
		t.Errorf("another process worked on %d rows (%v) while the lease held", n, err)
	}
	time.Sleep(lease + 100*time.Millisecond)
	if n, err := other.RunDue(ctx); err != nil || n != 1 {
		t.Errorf("after the lease, another process worked on %d rows (%v), want the one", n, err)
	}
	if inv := e.invoices(id)[0]; inv.Status != domain.InvoicePaid {
		t.Errorf("invoice %s after the takeover, want paid", inv.Status)
	}
}
