package billing

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
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
