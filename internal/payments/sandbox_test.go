package payments_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/payments"
	"github.com/billing-oss/billing/internal/testenv"
)

func newSandbox(t *testing.T) (*payments.Sandbox, *pgxpool.Pool) {
	t.Helper()
	db := testenv.Postgres(t)
	return payments.NewSandbox(db), db
}

func chargeRequest(key, paymentMethod string) domain.ChargeRequest {
	return domain.ChargeRequest{
		IdempotencyKey: key,
		PaymentMethod:  paymentMethod,
		CustomerID:     "cus_1",
		Amount:         1999,
		Currency:       "EUR",
		Description:    "Pro plan, January",
	}
}

// chargeRows counts the sandbox's rows for a key with SQL of its own, so that a sandbox that
// recorded a charge twice cannot hide it behind its own reads.
func chargeRows(t *testing.T, db *pgxpool.Pool, key string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM sandbox_charges WHERE idempotency_key = $1`, key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// refunded returns a charge's refund total twice, from the charge row and as the sum of its
// refund rows, which must agree.
func refunded(t *testing.T, db *pgxpool.Pool, chargeID string) int64 {
	t.Helper()
	var onCharge, summed int64
	err := db.QueryRow(context.Background(), `SELECT c.amount_refunded, coalesce((SELECT sum(amount) FROM sandbox_refunds WHERE charge_id = c.id), 0)
FROM sandbox_charges c WHERE c.id = $1`, chargeID).Scan(&onCharge, &summed)
	if err != nil {
		t.Fatal(err)
	}
	if onCharge != summed {
		t.Fatalf("charge %s: amount_refunded %d, but its refunds sum to %d", chargeID, onCharge, summed)
	}
	return onCharge
}

func TestChargeOutcomeByPaymentMethod(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	tests := []struct {
		paymentMethod string
		wantStatus    domain.ChargeStatus
		wantCode      string
		wantTimeout   bool
	}{
		{payments.CardOK, domain.ChargeSucceeded, "", false},
		{"pm_card_ok_visa", domain.ChargeSucceeded, "", false},
		{payments.CardDeclined, domain.ChargeDeclined, domain.DeclineCardDeclined, false},
		{payments.CardInsufficientFunds, domain.ChargeDeclined, domain.DeclineInsufficientFunds, false},
		{payments.CardTimeout, domain.ChargeSucceeded, "", true},
		{"", domain.ChargeDeclined, domain.DeclineNoPaymentMethod, false},
		{"pm_card_stolen", domain.ChargeDeclined, payments.DeclineInvalidPaymentMethod, false},
		{"pm_card_ok-visa", domain.ChargeDeclined, payments.DeclineInvalidPaymentMethod, false}, // starts like ok, but malformed
		{"card_ok", domain.ChargeDeclined, payments.DeclineInvalidPaymentMethod, false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.paymentMethod), func(t *testing.T) {
			req := chargeRequest(fmt.Sprintf("outcome-%d", i), tt.paymentMethod)
			got, err := sandbox.Charge(ctx, req)
			if tt.wantTimeout {
				if !errors.Is(err, domain.ErrGatewayTimeout) {
					t.Fatalf("Charge: got error %v, want ErrGatewayTimeout", err)
				}
				if got != (domain.Charge{}) {
					t.Errorf("Charge timed out but returned %+v; the caller must not see the outcome", got)
				}
			} else if err != nil {
				t.Fatalf("Charge: %v", err)
			}

			looked, err := sandbox.LookupCharge(ctx, req.IdempotencyKey)
			if err != nil {
				t.Fatalf("LookupCharge: %v", err)
			}
			if !tt.wantTimeout && looked != got {
				t.Errorf("LookupCharge: got %+v, want what Charge returned, %+v", looked, got)
			}
			if looked.Status != tt.wantStatus || looked.DeclineCode != tt.wantCode {
				t.Errorf("got status %q code %q, want %q %q", looked.Status, looked.DeclineCode, tt.wantStatus, tt.wantCode)
			}
			if (looked.DeclineMessage != "") != (tt.wantCode != "") {
				t.Errorf("got decline message %q with code %q: a message goes with a decline and only with one", looked.DeclineMessage, looked.DeclineCode)
			}
			if !strings.HasPrefix(looked.ID, "ch_") || len(looked.ID) < 20 {
				t.Errorf("got charge id %q, want ch_ and a random suffix", looked.ID)
			}
			if looked.IdempotencyKey != req.IdempotencyKey || looked.Amount != req.Amount || looked.Currency != req.Currency {
				t.Errorf("got key %q amount %d %s, want %q %d %s", looked.IdempotencyKey, looked.Amount, looked.Currency,
					req.IdempotencyKey, req.Amount, req.Currency)
			}
			if n := chargeRows(t, db, req.IdempotencyKey); n != 1 {
				t.Errorf("got %d charge rows, want 1", n)
			}
		})
	}
	if got, _ := sandbox.Charge(ctx, chargeRequest("msg", payments.CardDeclined)); got.DeclineMessage != "Your card was declined." {
		t.Errorf("got decline message %q, want the provider's wording %q", got.DeclineMessage, "Your card was declined.")
	}
}

func TestChargeRepeatReturnsTheRecordedCharge(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	for _, pm := range []string{payments.CardOK, payments.CardDeclined, ""} {
		t.Run(fmt.Sprintf("%q", pm), func(t *testing.T) {
			req := chargeRequest("repeat-"+pm, pm)
			first, err := sandbox.Charge(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			req.Description = "reworded by a retry" // a label, not part of what was asked for
			for i := range 3 {
				again, err := sandbox.Charge(ctx, req)
				if err != nil {
					t.Fatalf("repeat %d: %v", i, err)
				}
				if again != first {
					t.Fatalf("repeat %d: got %+v, want the first charge %+v", i, again, first)
				}
			}
			if n := chargeRows(t, db, req.IdempotencyKey); n != 1 {
				t.Errorf("got %d charge rows after repeats, want 1", n)
			}
		})
	}
}

// TestConcurrentChargesWithOneKeyChargeOnce has 20 callers race with one key: all must get the
// same charge, and only one row may exist. For the timeout card exactly one caller, the one that
// made the charge, is told the outcome is unknown; the others replay the recorded charge.
func TestConcurrentChargesWithOneKeyChargeOnce(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	for _, pm := range []string{payments.CardOK, payments.CardDeclined, payments.CardTimeout} {
		t.Run(pm, func(t *testing.T) {
			const callers = 20
			req := chargeRequest("race-"+pm, pm)
			var (
				wg       sync.WaitGroup
				start    = make(chan struct{})
				charges  = make([]domain.Charge, callers)
				errs     = make([]error, callers)
				timeouts int
			)
			for i := range callers {
				wg.Go(func() {
					<-start
					charges[i], errs[i] = sandbox.Charge(ctx, req)
				})
			}
			close(start)
			wg.Wait()

			recorded, err := sandbox.LookupCharge(ctx, req.IdempotencyKey)
			if err != nil {
				t.Fatal(err)
			}
			for i := range callers {
				if pm == payments.CardTimeout && errors.Is(errs[i], domain.ErrGatewayTimeout) {
					timeouts++
					continue
				}
				if errs[i] != nil {
					t.Errorf("caller %d: %v", i, errs[i])
				} else if charges[i] != recorded {
					t.Errorf("caller %d: got %+v, want the recorded charge %+v", i, charges[i], recorded)
				}
			}
			if wantTimeouts := map[bool]int{true: 1, false: 0}[pm == payments.CardTimeout]; timeouts != wantTimeouts {
				t.Errorf("got %d timeouts, want %d", timeouts, wantTimeouts)
			}
			if n := chargeRows(t, db, req.IdempotencyKey); n != 1 {
				t.Errorf("got %d charge rows, want 1", n)
			}
		})
	}
}

func TestChargeKeyReuseWithOtherParametersIsRefused(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	req := chargeRequest("reuse", payments.CardOK)
	first, err := sandbox.Charge(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*domain.ChargeRequest)
	}{
		{"amount", func(r *domain.ChargeRequest) { r.Amount++ }},
		{"currency", func(r *domain.ChargeRequest) { r.Currency = "USD" }},
		{"payment method", func(r *domain.ChargeRequest) { r.PaymentMethod = "pm_card_ok_visa" }},
		{"declining payment method", func(r *domain.ChargeRequest) { r.PaymentMethod = payments.CardDeclined }},
		{"customer", func(r *domain.ChargeRequest) { r.CustomerID = "cus_2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := req
			tt.change(&other)
			got, err := sandbox.Charge(ctx, other)
			if !errors.Is(err, payments.ErrIdempotencyKeyMismatch) {
				t.Fatalf("got %+v, %v; want ErrIdempotencyKeyMismatch", got, err)
			}
		})
	}
	if looked, err := sandbox.LookupCharge(ctx, req.IdempotencyKey); err != nil || looked != first {
		t.Errorf("after refused reuses: got %+v, %v; want the first charge %+v unchanged", looked, err, first)
	}
	if n := chargeRows(t, db, req.IdempotencyKey); n != 1 {
		t.Errorf("got %d charge rows, want 1", n)
	}
}

// TestTimeoutIsResolvedByLookupOrRepeat is the path billing takes after a timeout: the charge
// was made, the caller learns so by looking it up, and calling again does not charge twice.
func TestTimeoutIsResolvedByLookupOrRepeat(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	req := chargeRequest("timeout", payments.CardTimeout)

	if _, err := sandbox.LookupCharge(ctx, req.IdempotencyKey); !errors.Is(err, domain.ErrChargeNotFound) {
		t.Fatalf("LookupCharge before any charge: got %v, want ErrChargeNotFound", err)
	}
	if _, err := sandbox.Charge(ctx, req); !errors.Is(err, domain.ErrGatewayTimeout) {
		t.Fatalf("Charge: got %v, want ErrGatewayTimeout", err)
	}
	looked, err := sandbox.LookupCharge(ctx, req.IdempotencyKey)
	if err != nil {
		t.Fatalf("LookupCharge after timeout: %v", err)
	}
	if looked.Status != domain.ChargeSucceeded || looked.Amount != req.Amount {
		t.Errorf("LookupCharge after timeout: got %+v, want a succeeded charge of %d", looked, req.Amount)
	}
	again, err := sandbox.Charge(ctx, req)
	if err != nil {
		t.Fatalf("repeat Charge after timeout: %v", err)
	}
	if again != looked {
		t.Errorf("repeat Charge: got %+v, want the looked-up charge %+v", again, looked)
	}
	if n := chargeRows(t, db, req.IdempotencyKey); n != 1 {
		t.Errorf("got %d charge rows, want 1", n)
	}
}

// TestChargeWithEndedContextIsATimeout: a call cut off by its context has, for its caller, an
// unknown outcome, the same as a provider's timeout, so billing must look the charge up.
func TestChargeWithEndedContextIsATimeout(t *testing.T) {
	sandbox, _ := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := sandbox.Charge(ctx, chargeRequest("cut-off", payments.CardOK))
	if !errors.Is(err, domain.ErrGatewayTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrGatewayTimeout wrapping context.Canceled", err)
	}
	if _, err := sandbox.LookupCharge(context.Background(), "cut-off"); !errors.Is(err, domain.ErrChargeNotFound) {
		t.Errorf("LookupCharge: got %v, want ErrChargeNotFound (this call never reached the database)", err)
	}
}

func TestInvalidRequestsAreRefusedAndNotRecorded(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	charges := []struct {
		name   string
		change func(*domain.ChargeRequest)
	}{
		{"zero amount", func(r *domain.ChargeRequest) { r.Amount = 0 }},
		{"negative amount", func(r *domain.ChargeRequest) { r.Amount = -5 }},
		{"lower-case currency", func(r *domain.ChargeRequest) { r.Currency = "eur" }},
		{"short currency", func(r *domain.ChargeRequest) { r.Currency = "EU" }},
		{"long currency", func(r *domain.ChargeRequest) { r.Currency = "EURO" }},
		{"no currency", func(r *domain.ChargeRequest) { r.Currency = "" }},
		{"no key", func(r *domain.ChargeRequest) { r.IdempotencyKey = "" }},
		{"key too long", func(r *domain.ChargeRequest) { r.IdempotencyKey = strings.Repeat("k", 256) }},
	}
	for i, tt := range charges {
		t.Run("charge "+tt.name, func(t *testing.T) {
			req := chargeRequest(fmt.Sprintf("invalid-%d", i), payments.CardOK)
			tt.change(&req)
			if got, err := sandbox.Charge(ctx, req); !errors.Is(err, payments.ErrInvalidRequest) {
				t.Fatalf("got %+v, %v; want ErrInvalidRequest", got, err)
			}
			if n := chargeRows(t, db, req.IdempotencyKey); n != 0 {
				t.Errorf("got %d charge rows for a refused request, want 0", n)
			}
		})
	}

	charge, err := sandbox.Charge(ctx, chargeRequest("valid", payments.CardOK))
	if err != nil {
		t.Fatal(err)
	}
	refunds := []domain.RefundRequest{
		{IdempotencyKey: "r", ChargeID: charge.ID, Amount: 0},
		{IdempotencyKey: "r", ChargeID: charge.ID, Amount: -1},
		{IdempotencyKey: "r", ChargeID: "", Amount: 1},
		{IdempotencyKey: "", ChargeID: charge.ID, Amount: 1},
	}
	for _, req := range refunds {
		if got, err := sandbox.Refund(ctx, req); !errors.Is(err, payments.ErrInvalidRequest) {
			t.Errorf("Refund(%+v): got %+v, %v; want ErrInvalidRequest", req, got, err)
		}
	}
	if got := refunded(t, db, charge.ID); got != 0 {
		t.Errorf("got %d refunded after refused refunds, want 0", got)
	}
}

func TestRefunds(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	charge := func(t *testing.T, key, pm string) domain.Charge {
		t.Helper()
		c, err := sandbox.Charge(ctx, chargeRequest(key, pm))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	refund := func(key, chargeID string, amount int64) (domain.Refund, error) {
		return sandbox.Refund(ctx, domain.RefundRequest{IdempotencyKey: key, ChargeID: chargeID, Amount: amount})
	}

	t.Run("full", func(t *testing.T) {
		c := charge(t, "full", payments.CardOK)
		r, err := refund("full-r", c.ID, c.Amount)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.ID, "re_") || r.ChargeID != c.ID || r.Amount != c.Amount {
			t.Errorf("got %+v, want re_… of %d on %s", r, c.Amount, c.ID)
		}
		if got := refunded(t, db, c.ID); got != c.Amount {
			t.Errorf("got %d refunded, want %d", got, c.Amount)
		}
		if _, err := refund("full-r2", c.ID, 1); !errors.Is(err, payments.ErrRefundExceedsCharge) {
			t.Errorf("refund after a full refund: got %v, want ErrRefundExceedsCharge", err)
		}
	})

	t.Run("partial, then the rest, then over", func(t *testing.T) {
		c := charge(t, "partial", payments.CardOK) // 1999
		if _, err := refund("partial-1", c.ID, 500); err != nil {
			t.Fatal(err)
		}
		if _, err := refund("partial-2", c.ID, 1500); !errors.Is(err, payments.ErrRefundExceedsCharge) {
			t.Errorf("refund of 1500 with 1499 left: got %v, want ErrRefundExceedsCharge", err)
		}
		if got := refunded(t, db, c.ID); got != 500 {
			t.Errorf("got %d refunded after a refused refund, want 500", got)
		}
		if _, err := refund("partial-3", c.ID, 1499); err != nil {
			t.Fatalf("refund of the remaining 1499: %v", err)
		}
		if got := refunded(t, db, c.ID); got != c.Amount {
			t.Errorf("got %d refunded, want %d", got, c.Amount)
		}
	})

	t.Run("repeat returns the recorded refund", func(t *testing.T) {
		c := charge(t, "repeat", payments.CardOK)
		first, err := refund("repeat-r", c.ID, 700)
		if err != nil {
			t.Fatal(err)
		}
		again, err := refund("repeat-r", c.ID, 700)
		if err != nil || again != first {
			t.Errorf("repeat: got %+v, %v; want %+v", again, err, first)
		}
		if got := refunded(t, db, c.ID); got != 700 {
			t.Errorf("got %d refunded after a repeat, want 700 (refunded once)", got)
		}
	})

	t.Run("key reuse with other parameters", func(t *testing.T) {
		c := charge(t, "reuse", payments.CardOK)
		other := charge(t, "reuse-other", payments.CardOK)
		if _, err := refund("reuse-r", c.ID, 100); err != nil {
			t.Fatal(err)
		}
		if _, err := refund("reuse-r", c.ID, 101); !errors.Is(err, payments.ErrIdempotencyKeyMismatch) {
			t.Errorf("other amount: got %v, want ErrIdempotencyKeyMismatch", err)
		}
		if _, err := refund("reuse-r", other.ID, 100); !errors.Is(err, payments.ErrIdempotencyKeyMismatch) {
			t.Errorf("other charge: got %v, want ErrIdempotencyKeyMismatch", err)
		}
		if got := refunded(t, db, c.ID); got != 100 {
			t.Errorf("got %d refunded, want 100", got)
		}
		if got := refunded(t, db, other.ID); got != 0 {
			t.Errorf("got %d refunded from the other charge, want 0", got)
		}
	})

	t.Run("declined charge", func(t *testing.T) {
		c := charge(t, "declined", payments.CardDeclined)
		if _, err := refund("declined-r", c.ID, 1); !errors.Is(err, payments.ErrChargeNotRefundable) {
			t.Errorf("got %v, want ErrChargeNotRefundable", err)
		}
	})

	t.Run("unknown charge", func(t *testing.T) {
		if _, err := refund("unknown-r", "ch_doesnotexist", 1); !errors.Is(err, payments.ErrUnknownCharge) {
			t.Errorf("got %v, want ErrUnknownCharge", err)
		}
	})

	t.Run("timed-out charge", func(t *testing.T) {
		if _, err := sandbox.Charge(ctx, chargeRequest("timeout", payments.CardTimeout)); !errors.Is(err, domain.ErrGatewayTimeout) {
			t.Fatalf("got %v, want ErrGatewayTimeout", err)
		}
		c, err := sandbox.LookupCharge(ctx, "timeout")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := refund("timeout-r", c.ID, c.Amount); err != nil {
			t.Errorf("refund of a timed-out (but made) charge: %v", err)
		}
	})
}

// TestConcurrentRefundsNeverOverRefund races 20 refunds of 150 against a charge of 1000: six fit,
// the other fourteen must be refused, whatever the interleaving.
func TestConcurrentRefundsNeverOverRefund(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	req := chargeRequest("race-refunds", payments.CardOK)
	req.Amount = 1000
	c, err := sandbox.Charge(ctx, req)
	if err != nil {
		t.Fatal(err)
	}

	const callers = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, callers)
	)
	for i := range callers {
		wg.Go(func() {
			<-start
			_, errs[i] = sandbox.Refund(ctx, domain.RefundRequest{IdempotencyKey: fmt.Sprintf("r-%d", i), ChargeID: c.ID, Amount: 150})
		})
	}
	close(start)
	wg.Wait()

	var ok, refused int
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, payments.ErrRefundExceedsCharge):
			refused++
		default:
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if ok != 6 || refused != 14 {
		t.Errorf("got %d refunds and %d refusals, want 6 and 14", ok, refused)
	}
	if got := refunded(t, db, c.ID); got != 900 {
		t.Errorf("got %d refunded, want 900", got)
	}
}

func TestConcurrentRefundsWithOneKeyRefundOnce(t *testing.T) {
	sandbox, db := newSandbox(t)
	ctx := context.Background()
	c, err := sandbox.Charge(ctx, chargeRequest("race-refund-key", payments.CardOK))
	if err != nil {
		t.Fatal(err)
	}
	const callers = 20
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		refunds = make([]domain.Refund, callers)
		errs    = make([]error, callers)
	)
	for i := range callers {
		wg.Go(func() {
			<-start
			refunds[i], errs[i] = sandbox.Refund(ctx, domain.RefundRequest{IdempotencyKey: "one-key", ChargeID: c.ID, Amount: 300})
		})
	}
	close(start)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
		} else if refunds[i] != refunds[0] {
			t.Errorf("caller %d: got %+v, want the same refund as caller 0, %+v", i, refunds[i], refunds[0])
		}
	}
	if got := refunded(t, db, c.ID); got != 300 {
		t.Errorf("got %d refunded, want 300 (once)", got)
	}
}

// TestChargesSurviveARestart opens a second pool (a restarted billingd) after closing the first:
// the charge made before must be found by its key, replayed rather than made again, and
// refundable.
func TestChargesSurviveARestart(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	open := func() *pgxpool.Pool {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		return pool
	}

	before := open()
	made, err := payments.NewSandbox(before).Charge(ctx, chargeRequest("durable", payments.CardOK))
	before.Close()
	if err != nil {
		t.Fatal(err)
	}

	after := open()
	defer after.Close()
	restarted := payments.NewSandbox(after)
	if got, err := restarted.LookupCharge(ctx, "durable"); err != nil || got != made {
		t.Errorf("LookupCharge after restart: got %+v, %v; want %+v", got, err, made)
	}
	if got, err := restarted.Charge(ctx, chargeRequest("durable", payments.CardOK)); err != nil || got != made {
		t.Errorf("repeat Charge after restart: got %+v, %v; want %+v", got, err, made)
	}
	if _, err := restarted.Refund(ctx, domain.RefundRequest{IdempotencyKey: "durable-r", ChargeID: made.ID, Amount: made.Amount}); err != nil {
		t.Errorf("Refund after restart: %v", err)
	}
	list, err := restarted.Charges(ctx, "cus_1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != made.ID || list[0].AmountRefunded != made.Amount {
		t.Errorf("Charges after restart: got %+v, want one charge %s fully refunded", list, made.ID)
	}
}

func TestChargesListsACustomersChargesWithRefunds(t *testing.T) {
	sandbox, _ := newSandbox(t)
	ctx := context.Background()
	charge := func(key, customer, pm string, amount int64) domain.Charge {
		t.Helper()
		req := chargeRequest(key, pm)
		req.CustomerID, req.Amount = customer, amount
		c, err := sandbox.Charge(ctx, req)
		if err != nil && !errors.Is(err, domain.ErrGatewayTimeout) {
			t.Fatal(err)
		}
		return c
	}
	first := charge("a1", "cus_a", payments.CardOK, 1000)
	charge("b1", "cus_b", payments.CardOK, 5000)
	charge("a2", "cus_a", payments.CardDeclined, 2000)
	charge("a3", "cus_a", payments.CardTimeout, 3000)
	if _, err := sandbox.Refund(ctx, domain.RefundRequest{IdempotencyKey: "a1-r", ChargeID: first.ID, Amount: 250}); err != nil {
		t.Fatal(err)
	}

	list, err := sandbox.Charges(ctx, "cus_a")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		key      string
		status   domain.ChargeStatus
		amount   int64
		refunded int64
		pm       string
	}
	var got []row
	for _, c := range list {
		got = append(got, row{c.IdempotencyKey, c.Status, c.Amount, c.AmountRefunded, c.PaymentMethod})
		if c.CustomerID != "cus_a" || c.CreatedAt.IsZero() || c.Description == "" {
			t.Errorf("charge %s: customer %q, created %v, description %q", c.ID, c.CustomerID, c.CreatedAt, c.Description)
		}
	}
	want := []row{
		{"a1", domain.ChargeSucceeded, 1000, 250, payments.CardOK},
		{"a2", domain.ChargeDeclined, 2000, 0, payments.CardDeclined},
		{"a3", domain.ChargeSucceeded, 3000, 0, payments.CardTimeout},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Charges(cus_a):\n got %v\nwant %v", got, want)
	}
	if none, err := sandbox.Charges(ctx, "cus_nobody"); err != nil || len(none) != 0 {
		t.Errorf("Charges(cus_nobody): got %v, %v; want none", none, err)
	}
}

func TestValidPaymentMethod(t *testing.T) {
	tests := []struct {
		token string
		want  bool
	}{
		{"pm_card_ok", true},
		{"pm_card_ok_visa", true},
		{"pm_card_timeout", true},
		{"pm_1", true},
		{"pm_" + strings.Repeat("a", 60), true},
		{"pm_" + strings.Repeat("a", 61), false},
		{"pm_", false},
		{"", false},
		{"card_ok", false},
		{"pm_Card", false},
		{"pm_card-ok", false},
		{"pm_card ok", false},
		{"pm_card_ok\n", false},
	}
	for _, tt := range tests {
		if got := payments.ValidPaymentMethod(tt.token); got != tt.want {
			t.Errorf("ValidPaymentMethod(%q) = %v, want %v", tt.token, got, tt.want)
		}
	}
}
