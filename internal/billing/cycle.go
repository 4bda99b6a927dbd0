package billing

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// Renew renews the subscription's period if it has ended by the service clock: the renewal (or
// the cancellation or trial end due then) and the new period's invoice, in one transaction, dated
// at the period end. It is safe to call any number of times from any number of processes: the
// period renewed is part of the decision, so a repeat is refused by the aggregate, and the
// invoice is issued only in the transaction that wins.
func (s *Service) Renew(ctx context.Context, id uuid.UUID) error {
	now := s.clock.Now()
	return s.inTx(ctx, func(tx pgx.Tx) error {
		sub, _, err := eventstore.LoadSubscriptionWithSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		periodEnd, ok := sub.RenewalDue()
		if !ok || periodEnd.After(now) {
			return ScheduleSubscription(ctx, tx, id, sub) // nothing due: the row was stale
		}
		invoiceID := uuid.Must(uuid.NewV7()).String()
		meta := processMeta("renewal", fmt.Sprintf("renewal:%s:%s", id, periodEnd.Format("2006-01-02T15:04:05Z")))
		cmd := domain.Renew{PeriodEnd: periodEnd, InvoiceID: invoiceID, CancelTrialWithoutPaymentMethod: s.cancelTrl}
		sub, events, err := appendSubscription(ctx, tx, meta, sub, cmd, later(periodEnd, sub.UpdatedAt))
		if err != nil && !ignorable(err) {
			return err
		}
		for _, e := range events {
			if r, ok := e.(domain.Renewed); ok && r.InvoiceID != "" {
				if _, err := issueInvoice(ctx, tx, meta, periodInvoice(sub, invoiceID, domain.InvoiceForCycle), r.RenewedAt); err != nil {
					return err
				}
			}
		}
		return ScheduleSubscription(ctx, tx, id, sub)
	})
}

// NotifyTrialWillEnd records subscription.trial_will_end when it is due.
func (s *Service) NotifyTrialWillEnd(ctx context.Context, id uuid.UUID) error {
	now := s.clock.Now()
	return s.inTx(ctx, func(tx pgx.Tx) error {
		sub, _, err := eventstore.LoadSubscriptionWithSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		if dueAt, ok := sub.TrialReminderDue(); ok && !dueAt.After(now) {
			meta := processMeta("trial reminder", "trial-reminder:"+id.String())
			sub, _, err = appendSubscription(ctx, tx, meta, sub, domain.NotifyTrialWillEnd{}, later(dueAt, sub.UpdatedAt))
			if err != nil && !ignorable(err) {
				return err
			}
		}
		return ScheduleSubscription(ctx, tx, id, sub)
	})
}

// ignorable are decision errors a process meets when someone else already did the work (or the
// subscription moved on): nothing to do.
func ignorable(err error) bool {
	var renewed *domain.AlreadyRenewedError
	var transition *domain.InvalidTransitionError
	return errors.Is(err, domain.ErrNoChange) || errors.Is(err, domain.ErrSubscriptionCanceled) ||
		errors.As(err, &renewed) || errors.As(err, &transition)
}
