package billing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
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

// TestCollectManyRecordsTogether: collections worked on together are charged one by one and
// recorded in one transaction; an invoice with nothing due is left alone, and a second invoice
// of one subscription is collected after the first is recorded, so its attempt sees the
// subscription the first left.
func TestCollectManyRecordsTogether(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	paying := e.create("cus_pays", "pro_monthly", 1, "pm_card_ok", 0)
	declining := e.create("cus_declines", "pro_monthly", 1, "pm_card_declined", 0)
	paid := e.create("cus_paid", "pro_monthly", 1, "pm_card_ok", 0)
	if err := e.svc.Collect(ctx, invoiceID(e.invoices(paid)[0])); err != nil {
		t.Fatal(err)
	}
	twice := e.create("cus_twice", "pro_monthly", 1, "pm_card_declined", 0)
	e.clock.Set(e.subscription(twice).PeriodEnd)
	if err := e.svc.Renew(ctx, twice); err != nil { // a second open invoice, its first not collected yet
		t.Fatal(err)
	}
	first, second := e.invoices(twice)[0], e.invoices(twice)[1]

	ids := []uuid.UUID{invoiceID(e.invoices(paying)[0]), invoiceID(e.invoices(declining)[0]),
		invoiceID(e.invoices(paid)[0]), invoiceID(first), invoiceID(second)}
	if err := e.svc.CollectMany(ctx, ids); err != nil {
		t.Fatalf("collect: %v", err)
	}

	for _, c := range []struct {
		sub      uuid.UUID
		invoice  int
		attempts int
		status   domain.InvoiceStatus
	}{{paying, 0, 1, domain.InvoicePaid}, {declining, 0, 1, domain.InvoiceOpen}, {paid, 0, 1, domain.InvoicePaid},
		{twice, 0, 1, domain.InvoiceOpen}, {twice, 1, 1, domain.InvoiceOpen}} {
		if inv := e.invoices(c.sub)[c.invoice]; inv.Attempts != c.attempts || inv.Status != c.status {
			t.Errorf("invoice %s: %s after %d attempts, want %s after %d", inv.Number, inv.Status, inv.Attempts, c.status, c.attempts)
		}
	}
	if s := e.subscription(declining).Status; s != domain.StatusPastDue {
		t.Errorf("declined subscription %s, want past_due", s)
	}
	if got := e.charged("cus_pays") + e.charged("cus_paid"); got != 2*e.invoices(paying)[0].Total {
		t.Errorf("charged %d, want each of two invoices once", got)
	}

	// The three attempts found due together are recorded in one transaction, the second invoice
	// of the same subscription in one of its own.
	txOf := func(id uuid.UUID) int64 {
		var tx int64
		if err := e.db.QueryRow(ctx, `SELECT transaction_id::text::bigint FROM events
			WHERE stream_id = $1 AND type IN ('invoice.payment_succeeded', 'invoice.payment_failed')`, id).Scan(&tx); err != nil {
			t.Fatalf("attempt of %s: %v", id, err)
		}
		return tx
	}
	together := txOf(ids[0])
	if txOf(ids[1]) != together || txOf(ids[3]) != together {
		t.Errorf("attempts due together recorded in transactions %d, %d, %d; want one", together, txOf(ids[1]), txOf(ids[3]))
	}
	if txOf(ids[4]) == together {
		t.Errorf("the second invoice of a subscription was recorded with its first")
	}
	var due int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM billing_schedule WHERE kind = 'collect' AND stream_id = ANY($1)`,
		ids).Scan(&due); err != nil || due != 3 {
		t.Errorf("%d collect rows left (%v), want the three declined invoices' retries", due, err)
	}
}

// TestCollectManyIsolatesAFailure: when recording the attempts together fails because of one
// invoice, each is recorded on its own: the others are recorded, and the failure is reported.
func TestCollectManyIsolatesAFailure(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	subs := []uuid.UUID{e.create("cus_a", "pro_monthly", 1, "pm_card_ok", 0),
		e.create("cus_b", "pro_monthly", 1, "pm_card_declined", 0), e.create("cus_c", "pro_monthly", 1, "pm_card_ok", 0)}
	ids := make([]uuid.UUID, len(subs))
	for i, sub := range subs {
		ids[i] = invoiceID(e.invoices(sub)[0])
	}
	// Between charging and recording, the last invoice is voided: its attempt cannot be recorded.
	e.svc.fault = func(point string) error {
		if point == "collect:charged" {
			e.svc.fault = nil
			meta := eventstore.Metadata{Actor: "test"}
			return pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
				inv := e.invoices(subs[2])[0]
				return appendEvents(ctx, tx, eventstore.InvoiceStream, ids[2], inv.Version, meta,
					domain.InvoiceVoided{Reason: "test", VoidedAt: e.clock.Now()})
			})
		}
		return nil
	}
	err := e.svc.CollectMany(ctx, ids)
	if !errors.Is(err, domain.ErrInvoiceNotOpen) {
		t.Errorf("collect: %v, want the voided invoice's ErrInvoiceNotOpen", err)
	}
	if inv := e.invoices(subs[0])[0]; inv.Status != domain.InvoicePaid {
		t.Errorf("first invoice %s, want paid", inv.Status)
	}
	if inv := e.invoices(subs[1])[0]; inv.Attempts != 1 || inv.Status != domain.InvoiceOpen {
		t.Errorf("second invoice %s after %d attempts, want its decline recorded", inv.Status, inv.Attempts)
	}
}

func invoiceID(inv domain.Invoice) uuid.UUID { return uuid.MustParse(inv.InvoiceID) }

// slowGateway takes delay over every charge.
type slowGateway struct {
	domain.PaymentGateway
	delay time.Duration
}

func (g slowGateway) Charge(ctx context.Context, req domain.ChargeRequest) (domain.Charge, error) {
	time.Sleep(g.delay)
	return g.PaymentGateway.Charge(ctx, req)
}

// TestCollectManyGivesBackWhatItCannotChargeInTime: collections worked on together are charged
// one after the other; with a gateway so slow that the lease would run out before the last,
// the attempts not made by half the lease are given back (their rows released, as due as
// before) instead of being left to a lease that another process would take over mid-charge.
func TestCollectManyGivesBackWhatItCannotChargeInTime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const lease = 200 * time.Millisecond
	svc := New(Config{DB: e.db, Gateway: slowGateway{payments.NewSandbox(e.db), lease * 3 / 4}, Clock: e.clock, Lease: lease})
	var subs, ids []uuid.UUID
	for _, c := range []string{"cus_slow_a", "cus_slow_b", "cus_slow_c"} {
		sub := e.create(c, "pro_monthly", 1, "pm_card_ok", 0)
		subs, ids = append(subs, sub), append(ids, invoiceID(e.invoices(sub)[0]))
	}
	jobs, err := svc.claim(ctx, e.clock.Now(), lease, 16)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("claim: %v, %v", jobs, err)
	}
	if err := svc.CollectMany(ctx, ids); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		inv := e.invoices(sub)[0]
		if want := i == 0; (inv.Status == domain.InvoicePaid) != want || inv.Attempts != map[bool]int{true: 1}[want] {
			t.Errorf("invoice %d: %s after %d attempts; want only the first paid", i, inv.Status, inv.Attempts)
		}
	}
	var free int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM billing_schedule WHERE kind = 'collect' AND claimed_until IS NULL
		AND due_at <= $1 AND stream_id = ANY($2)`, e.clock.Now(), ids[1:]).Scan(&free); err != nil || free != 2 {
		t.Errorf("%d of the two invoices not attempted are due and free to claim (%v)", free, err)
	}
}
