package httpapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// errorStatuses is the one place where errors become HTTP statuses. Each entry matches with
// errors.Is or errors.As, so wrapped errors map like bare ones.
var errorStatuses = []struct {
	match  func(error) bool
	status int
	slug   string
	title  string
	field  string // JSON pointer of the request field at fault, if any
}{
	{is(domain.ErrSubscriptionNotFound), http.StatusNotFound, "not-found", "Subscription not found", ""},
	{is(domain.ErrInvoiceNotFound), http.StatusNotFound, "not-found", "Invoice not found", ""},
	{is(domain.ErrUpgradeNotFound), http.StatusNotFound, "not-found", "Upgrade not found", ""},
	{is(domain.ErrSubscriptionExists), http.StatusConflict, "already-exists", "Subscription already exists", ""},
	{is(domain.ErrSubscriptionCanceled), http.StatusConflict, "subscription-canceled", "Subscription is canceled", ""},
	{is(domain.ErrCancellationNotScheduled), http.StatusConflict, "cancellation-not-scheduled", "No cancellation is scheduled", ""},
	{is(domain.ErrCancellationAlreadyScheduled), http.StatusConflict, "cancellation-already-scheduled", "Cancellation already scheduled", ""},
	{as[*domain.InvalidTransitionError], http.StatusConflict, "invalid-transition", "Not allowed in the subscription's status", ""},
	{as[*domain.PeriodEndedError], http.StatusConflict, "period-ended", "Billing period has ended", ""},
	{as[*domain.TimeOrderError], http.StatusConflict, "time-order", "Command is older than the subscription's history", ""},
	{as[*domain.AlreadyRenewedError], http.StatusConflict, "already-renewed", "Period already renewed", ""},
	{as[*domain.NotDueError], http.StatusConflict, "not-due", "Not due yet", ""},
	{eventstore.Retryable, http.StatusConflict, "concurrent-modification", "Concurrent modification", ""},
	{is(domain.ErrNoChange), http.StatusUnprocessableEntity, "no-change", "Nothing to change", ""},
	{as[*domain.InvalidSeatsError], http.StatusUnprocessableEntity, "invalid-fields", "Invalid request fields", "/seats"},
	{as[*domain.InvalidTrialError], http.StatusUnprocessableEntity, "invalid-fields", "Invalid request fields", "/trial_days"},
	{as[*domain.InvalidCustomerError], http.StatusUnprocessableEntity, "invalid-fields", "Invalid request fields", "/customer_id"},
	{as[*domain.UnknownPlanError], http.StatusUnprocessableEntity, "invalid-fields", "Invalid request fields", "/plan_id"},
	{as[*domain.InvalidTimingError], http.StatusUnprocessableEntity, "invalid-fields", "Invalid request fields", "/timing"},
	{is(domain.ErrPaymentMethodRequired), http.StatusUnprocessableEntity, "invalid-fields", "Invalid request fields", "/payment_method"},
	{as[*domain.CurrencyMismatchError], http.StatusUnprocessableEntity, "currency-mismatch", "Currency cannot change", ""},
	{unavailable, http.StatusServiceUnavailable, "unavailable", "Service temporarily unavailable", ""},
}

// problemFor maps an error to its problem, or nil when the error is unexpected (a 500).
func problemFor(err error) *Problem {
	for _, e := range errorStatuses {
		if !e.match(err) {
			continue
		}
		detail := err.Error()
		if e.status == http.StatusServiceUnavailable {
			detail = "a dependency is unreachable; retry with the same Idempotency-Key"
		}
		p := problem(e.status, e.slug, e.title, detail)
		if e.field != "" {
			p.Errors = []FieldError{{Pointer: e.field, Detail: err.Error()}}
		}
		return p
	}
	return nil
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func as[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

// unavailable reports errors that mean the database could not be reached or went away mid
// request: the client can retry, so they are 503s rather than 500s.
//
// A connection closed by the server while pgx waits for a statement's result (Postgres stopped
// or crashed) reads as io.ErrUnexpectedEOF, not as a net.Error. The transaction then did not
// commit, or, if the statement was its COMMIT, may have: either way a retry with the same
// Idempotency-Key is safe, as the key's record commits with the events or not at all.
func unavailable(err error) bool {
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || isAdminShutdown(err)
}

func isAdminShutdown(err error) bool {
	var pgErr *pgconn.PgError
	// Class 57P: operator intervention (admin shutdown, crash shutdown, cannot connect now).
	return errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:3] == "57P"
}
