// Package payments holds the adapters billing charges and refunds customers through
// (domain.PaymentGateway). Sandbox is the deterministic one used in development and tests: it
// behaves like a real provider's test mode, with magic payment method tokens choosing the
// outcome, and keeps its records in PostgreSQL so that they outlive a restart of billingd.
package payments

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billing-oss/billing/domain"
)

// Payment method tokens the sandbox understands, as in a real provider's test mode. Any other
// token starting with CardOK (e.g. "pm_card_ok_visa") also succeeds, so tests can tell several
// customers' cards apart.
const (
	CardOK                = "pm_card_ok"
	CardDeclined          = "pm_card_declined"
	CardInsufficientFunds = "pm_card_insufficient_funds"
	// CardTimeout is charged, but the Charge call answers domain.ErrGatewayTimeout: only
	// LookupCharge, or a repeat of the call with the same idempotency key, reveals the outcome.
	CardTimeout = "pm_card_timeout"
)

// DeclineInvalidPaymentMethod is the sandbox's decline code for a token it does not know, as a
// real provider declines a payment method that does not exist.
const DeclineInvalidPaymentMethod = "invalid_payment_method"

var (
	// ErrInvalidRequest is a request no provider would accept (amount not positive, currency not
	// three upper-case letters, no idempotency key): a bug in the caller, not a decline.
	ErrInvalidRequest = errors.New("invalid payment request")
	// ErrIdempotencyKeyMismatch is a repeat of an idempotency key with other parameters. A real
	// provider refuses it rather than guess which of the two requests was meant.
	ErrIdempotencyKeyMismatch = errors.New("idempotency key already used with other parameters")
	// ErrUnknownCharge is a refund of a charge id the gateway never issued.
	ErrUnknownCharge = errors.New("no charge with this id")
	// ErrChargeNotRefundable is a refund of a declined charge: it moved no money.
	ErrChargeNotRefundable = errors.New("only a succeeded charge can be refunded")
	// ErrRefundExceedsCharge is a refund that would return more than the charge took, counting
	// the refunds already made.
	ErrRefundExceedsCharge = errors.New("refund exceeds the charge's unrefunded amount")
)

var paymentMethodPattern = regexp.MustCompile(`^pm_[a-z0-9_]{1,60}$`)

// ValidPaymentMethod reports whether token has the shape of a payment method token, so that the
// API can refuse a malformed one when it is set rather than at the first charge.
func ValidPaymentMethod(token string) bool {
	return paymentMethodPattern.MatchString(token)
}

// maxKeyLen bounds idempotency keys as real providers do (255 characters), so a caller that puts
// unbounded data in a key finds out in development.
const maxKeyLen = 255

// DB is what the sandbox needs from PostgreSQL: a *pgxpool.Pool or a *pgx.Conn. Refunds run in a
// transaction of their own, so it must be able to begin one.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Sandbox is a deterministic payment gateway whose records are the sandbox_charges and
// sandbox_refunds tables. It is safe for concurrent use, also from several processes sharing
// the database: every guarantee rests on PostgreSQL keys and row locks, none on process memory.
type Sandbox struct {
	db DB
}

var _ domain.PaymentGateway = (*Sandbox)(nil)

// NewSandbox returns a sandbox gateway keeping its records in db, which must be migrated.
func NewSandbox(db DB) *Sandbox {
	return &Sandbox{db: db}
}

// outcome is what the sandbox decides for a payment method: the whole of its "provider logic".
type outcome struct {
	status  domain.ChargeStatus
	code    string
	message string
	timeout bool // charged, but the caller is told the outcome is unknown
}

func decide(paymentMethod string) outcome {
	declined := func(code, message string) outcome {
		return outcome{status: domain.ChargeDeclined, code: code, message: message}
	}
	switch {
	case paymentMethod == "":
		return declined(domain.DeclineNoPaymentMethod, "The customer has no payment method.")
	case paymentMethod == CardDeclined:
		return declined(domain.DeclineCardDeclined, "Your card was declined.")
	case paymentMethod == CardInsufficientFunds:
		return declined(domain.DeclineInsufficientFunds, "Your card has insufficient funds.")
	case paymentMethod == CardTimeout:
		return outcome{status: domain.ChargeSucceeded, timeout: true}
	case strings.HasPrefix(paymentMethod, CardOK) && ValidPaymentMethod(paymentMethod):
		return outcome{status: domain.ChargeSucceeded}
	default:
		return declined(DeclineInvalidPaymentMethod, fmt.Sprintf("No such payment method: %q.", paymentMethod))
	}
}

const insertChargeSQL = `
INSERT INTO sandbox_charges (idempotency_key, id, customer_id, payment_method, amount, currency,
                             description, status, decline_code, decline_message)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id`

// Charge records the outcome the payment method decides, or returns the outcome recorded for
// req.IdempotencyKey by an earlier call. A decline is a Charge with status declined and a nil
// error; an error means the request was refused or the outcome is unknown.
func (s *Sandbox) Charge(ctx context.Context, req domain.ChargeRequest) (domain.Charge, error) {
	if err := validateCharge(req); err != nil {
		return domain.Charge{}, err
	}
	o := decide(req.PaymentMethod)
	c := domain.Charge{
		ID:             newID("ch_"),
		IdempotencyKey: req.IdempotencyKey,
		Status:         o.status,
		Amount:         req.Amount,
		Currency:       req.Currency,
		DeclineCode:    o.code,
		DeclineMessage: o.message,
	}
	// Insert first and read second: the primary key decides which of several concurrent calls
	// with one key records its outcome, and ON CONFLICT makes the others wait for that call to
	// commit and insert nothing. Reading first would let two callers both see no charge and both
	// charge.
	var id string
	err := s.db.QueryRow(ctx, insertChargeSQL, c.IdempotencyKey, c.ID, req.CustomerID, req.PaymentMethod,
		c.Amount, c.Currency, req.Description, c.Status, c.DeclineCode, c.DeclineMessage).Scan(&id)
	switch {
	case err == nil:
		if o.timeout {
			return domain.Charge{}, fmt.Errorf("charge %s: %w", req.IdempotencyKey, domain.ErrGatewayTimeout)
		}
		return c, nil
	case errors.Is(err, pgx.ErrNoRows):
		// The key was charged before (or concurrently, now committed): replay that outcome.
	case ctx.Err() != nil:
		// The statement may have committed before the context ended, just as a real provider may
		// have charged before the connection dropped, so the caller must look the charge up
		// rather than treat it as not made.
		return domain.Charge{}, fmt.Errorf("charge %s: %w: %w", req.IdempotencyKey, domain.ErrGatewayTimeout, err)
	default:
		return domain.Charge{}, fmt.Errorf("charge %s: %w", req.IdempotencyKey, err)
	}

	rec, err := s.chargeByKey(ctx, req.IdempotencyKey)
	if err != nil {
		return domain.Charge{}, fmt.Errorf("charge %s: replay: %w", req.IdempotencyKey, err)
	}
	if err := sameCharge(rec, req); err != nil {
		return domain.Charge{}, fmt.Errorf("charge %s: %w", req.IdempotencyKey, err)
	}
	return rec.Charge, nil
}

func validateCharge(req domain.ChargeRequest) error {
	var problems []string
	if req.IdempotencyKey == "" || len(req.IdempotencyKey) > maxKeyLen {
		problems = append(problems, fmt.Sprintf("idempotency key must be 1 to %d bytes", maxKeyLen))
	}
	if req.Amount <= 0 {
		problems = append(problems, fmt.Sprintf("amount %d must be > 0", req.Amount))
	}
	if !validCurrency(req.Currency) {
		problems = append(problems, fmt.Sprintf("currency %q must be three upper-case letters", req.Currency))
	}
	if len(problems) > 0 {
		return fmt.Errorf("charge %q: %w: %s", req.IdempotencyKey, ErrInvalidRequest, strings.Join(problems, "; "))
	}
	return nil
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for _, r := range c {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// sameCharge refuses a repeat that asks for something else than the recorded charge. The
// description is not compared: it is a label, and a retry that rewords it asks for the same
// money movement.
func sameCharge(rec ChargeRecord, req domain.ChargeRequest) error {
	var diffs []string
	if rec.Amount != req.Amount {
		diffs = append(diffs, fmt.Sprintf("amount %d, not %d", rec.Amount, req.Amount))
	}
	if rec.Currency != req.Currency {
		diffs = append(diffs, fmt.Sprintf("currency %s, not %s", rec.Currency, req.Currency))
	}
	if rec.PaymentMethod != req.PaymentMethod {
		diffs = append(diffs, fmt.Sprintf("payment method %q, not %q", rec.PaymentMethod, req.PaymentMethod))
	}
	if rec.CustomerID != req.CustomerID {
		diffs = append(diffs, fmt.Sprintf("customer %q, not %q", rec.CustomerID, req.CustomerID))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: charge %s was made with %s", ErrIdempotencyKeyMismatch, rec.ID, strings.Join(diffs, ", "))
	}
	return nil
}

// LookupCharge returns the charge made with idempotencyKey, or domain.ErrChargeNotFound.
func (s *Sandbox) LookupCharge(ctx context.Context, idempotencyKey string) (domain.Charge, error) {
	rec, err := s.chargeByKey(ctx, idempotencyKey)
	if err != nil {
		return domain.Charge{}, fmt.Errorf("look up charge %s: %w", idempotencyKey, err)
	}
	return rec.Charge, nil
}

// ChargeRecord is a charge as the sandbox holds it: the domain.Charge billing saw, plus what an
// operator or a test needs to check money movements.
type ChargeRecord struct {
	domain.Charge
	CustomerID     string
	PaymentMethod  string
	Description    string
	AmountRefunded int64
	CreatedAt      time.Time
}

const chargeColumns = `idempotency_key, id, status, amount, currency, decline_code, decline_message,
       customer_id, payment_method, description, amount_refunded, created_at`

func scanCharge(row pgx.Row) (ChargeRecord, error) {
	var r ChargeRecord
	var status string
	err := row.Scan(&r.IdempotencyKey, &r.ID, &status, &r.Amount, &r.Currency, &r.DeclineCode, &r.DeclineMessage,
		&r.CustomerID, &r.PaymentMethod, &r.Description, &r.AmountRefunded, &r.CreatedAt)
	r.Status = domain.ChargeStatus(status)
	r.CreatedAt = r.CreatedAt.UTC()
	return r, err
}

func (s *Sandbox) chargeByKey(ctx context.Context, key string) (ChargeRecord, error) {
	rec, err := scanCharge(s.db.QueryRow(ctx, `SELECT `+chargeColumns+` FROM sandbox_charges WHERE idempotency_key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return ChargeRecord{}, domain.ErrChargeNotFound
	}
	return rec, err
}

// Charges lists every charge made for customerID, declined ones included, oldest first, with
// the amount refunded from each: what tests and operators check billing's books against.
func (s *Sandbox) Charges(ctx context.Context, customerID string) ([]ChargeRecord, error) {
	rows, err := s.db.Query(ctx, `SELECT `+chargeColumns+` FROM sandbox_charges
WHERE customer_id = $1 ORDER BY created_at, id`, customerID)
	if err != nil {
		return nil, fmt.Errorf("list charges of %s: %w", customerID, err)
	}
	defer rows.Close()
	var out []ChargeRecord
	for rows.Next() {
		rec, err := scanCharge(rows)
		if err != nil {
			return nil, fmt.Errorf("list charges of %s: %w", customerID, err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list charges of %s: %w", customerID, err)
	}
	return out, nil
}

// errKeyTakenConcurrently aborts a refund transaction whose key a concurrent refund of another
// charge recorded first; Refund then reports the mismatch against that refund.
var errKeyTakenConcurrently = errors.New("refund key recorded concurrently")

// Refund returns req.Amount of a succeeded charge, or returns the refund recorded for
// req.IdempotencyKey by an earlier call.
func (s *Sandbox) Refund(ctx context.Context, req domain.RefundRequest) (domain.Refund, error) {
	if err := validateRefund(req); err != nil {
		return domain.Refund{}, err
	}
	// A replay needs no lock on the charge.
	if r, err := s.refundByKey(ctx, s.db, req.IdempotencyKey); err == nil {
		if err := sameRefund(r, req); err != nil {
			return domain.Refund{}, fmt.Errorf("refund %s: %w", req.IdempotencyKey, err)
		}
		return r, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return domain.Refund{}, fmt.Errorf("refund %s: %w", req.IdempotencyKey, err)
	}

	var out domain.Refund
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		// The row lock serialises every refund of this charge: the amount check below sees the
		// refunds committed before it, and a concurrent first call with this key for this charge
		// is visible once the lock is ours.
		var status string
		var amount, refunded int64
		err := tx.QueryRow(ctx, `SELECT status, amount, amount_refunded FROM sandbox_charges WHERE id = $1 FOR UPDATE`,
			req.ChargeID).Scan(&status, &amount, &refunded)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrUnknownCharge, req.ChargeID)
		}
		if err != nil {
			return err
		}
		if r, err := s.refundByKey(ctx, tx, req.IdempotencyKey); err == nil {
			out = r
			return sameRefund(r, req)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if domain.ChargeStatus(status) != domain.ChargeSucceeded {
			return fmt.Errorf("%w: charge %s is %s", ErrChargeNotRefundable, req.ChargeID, status)
		}
		if req.Amount > amount-refunded {
			return fmt.Errorf("%w: %d asked, %d of charge %s's %d already refunded",
				ErrRefundExceedsCharge, req.Amount, refunded, req.ChargeID, amount)
		}
		r := domain.Refund{ID: newID("re_"), ChargeID: req.ChargeID, Amount: req.Amount}
		tag, err := tx.Exec(ctx, `INSERT INTO sandbox_refunds (idempotency_key, id, charge_id, amount)
VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING`, req.IdempotencyKey, r.ID, r.ChargeID, r.Amount)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errKeyTakenConcurrently
		}
		if _, err := tx.Exec(ctx, `UPDATE sandbox_charges SET amount_refunded = amount_refunded + $2 WHERE id = $1`,
			r.ChargeID, r.Amount); err != nil {
			return err
		}
		out = r
		return nil
	})
	if errors.Is(err, errKeyTakenConcurrently) {
		r, err := s.refundByKey(ctx, s.db, req.IdempotencyKey)
		if err != nil {
			return domain.Refund{}, fmt.Errorf("refund %s: replay: %w", req.IdempotencyKey, err)
		}
		if err := sameRefund(r, req); err != nil {
			return domain.Refund{}, fmt.Errorf("refund %s: %w", req.IdempotencyKey, err)
		}
		return r, nil
	}
	if err != nil {
		return domain.Refund{}, fmt.Errorf("refund %s: %w", req.IdempotencyKey, err)
	}
	return out, nil
}

func validateRefund(req domain.RefundRequest) error {
	var problems []string
	if req.IdempotencyKey == "" || len(req.IdempotencyKey) > maxKeyLen {
		problems = append(problems, fmt.Sprintf("idempotency key must be 1 to %d bytes", maxKeyLen))
	}
	if req.ChargeID == "" {
		problems = append(problems, "charge id is required")
	}
	if req.Amount <= 0 {
		problems = append(problems, fmt.Sprintf("amount %d must be > 0", req.Amount))
	}
	if len(problems) > 0 {
		return fmt.Errorf("refund %q: %w: %s", req.IdempotencyKey, ErrInvalidRequest, strings.Join(problems, "; "))
	}
	return nil
}

// querier is the part of DB (or of a pgx.Tx) a single read needs.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Sandbox) refundByKey(ctx context.Context, q querier, key string) (domain.Refund, error) {
	var r domain.Refund
	err := q.QueryRow(ctx, `SELECT id, charge_id, amount FROM sandbox_refunds WHERE idempotency_key = $1`, key).
		Scan(&r.ID, &r.ChargeID, &r.Amount)
	return r, err
}

// sameRefund refuses a repeat of the recorded refund r's key that asks for another refund.
func sameRefund(r domain.Refund, req domain.RefundRequest) error {
	if r.ChargeID != req.ChargeID || r.Amount != req.Amount {
		return fmt.Errorf("%w: refund %s was %d of charge %s, not %d of %s",
			ErrIdempotencyKeyMismatch, r.ID, r.Amount, r.ChargeID, req.Amount, req.ChargeID)
	}
	return nil
}

// newID returns prefix followed by 26 random lower-case base32 characters (130 bits), in the
// style of a provider's object ids: unguessable, so they cannot collide across processes.
func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text())
}
