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

// Collect makes the invoice's next payment attempt if one is due: it charges the subscription's
// payment method with the key invoice:<id>:attempt:<n>, then records the outcome and what it
// means for the subscription in one transaction: paid (a past-due subscription recovers), or
// declined (past due, and the next retry scheduled), or declined for the last time (the invoice
// uncollectible, the subscription canceled for nonpayment or marked unpaid). A timeout is
// resolved by looking the charge up; an unknown outcome leaves the attempt due, to be made again
// with the same key, which can only return the first outcome.
func (s *Service) Collect(ctx context.Context, id uuid.UUID) error {
	inv, err := eventstore.LoadInvoice(ctx, s.db, id)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	if !inv.Collectible() || inv.NextAttemptAt.After(now) {
		return scheduleInvoice(ctx, s.db, id, inv)
	}
	subID, err := uuid.Parse(inv.SubscriptionID)
	if err != nil {
		return fmt.Errorf("invoice %s: subscription id: %w", id, err)
	}
	sub, _, err := eventstore.LoadSubscriptionWithSnapshot(ctx, s.db, subID)
	if err != nil {
		return err
	}
	attempt := inv.Attempts + 1
	key := fmt.Sprintf("invoice:%s:attempt:%d", id, attempt)
	// An attempt a process made and died (or lost the database) before recording is recorded as
	// it was made. Making it again would charge the subscription's payment method of now, which
	// may have changed since: a different request under the same key, refused by the gateway
	// every time, so the invoice would stay open and the money taken unrecorded.
	charge, err := s.gateway.LookupCharge(ctx, key)
	if errors.Is(err, domain.ErrChargeNotFound) {
		charge, err = s.charge(ctx, domain.ChargeRequest{
			IdempotencyKey: key,
			PaymentMethod:  sub.PaymentMethod, CustomerID: inv.CustomerID, Amount: inv.Total, Currency: inv.Currency,
			Description: "Invoice " + inv.Number,
		})
	}
	if err != nil {
		return err
	}
	if err := s.faultAt("collect:charged"); err != nil {
		return err
	}
	at := later(inv.NextAttemptAt, inv.UpdatedAt)
	meta := processMeta("payment collection", "invoice:"+id.String())
	return s.inTx(ctx, func(tx pgx.Tx) error {
		inv, err := eventstore.LoadInvoice(ctx, tx, id)
		if err != nil {
			return err
		}
		if inv.Attempts+1 != attempt {
			return nil // another process recorded this attempt
		}
		outcome, err := domain.RecordPayment(inv, charge, attempt, s.dunning, at)
		if err != nil {
			return err
		}
		events := []domain.Event{outcome}
		failed, final := outcome.(domain.InvoicePaymentFailed)
		final = final && failed.NextAttemptAt == nil
		if final {
			events = append(events, domain.InvoiceMarkedUncollectible{At: at})
		}
		if inv, err = appendInvoice(ctx, tx, meta, inv, events...); err != nil {
			return err
		}
		sub, _, err := eventstore.LoadSubscriptionWithSnapshot(ctx, tx, subID)
		if err != nil {
			return err
		}
		var cmd domain.Command
		switch {
		case charge.Status == domain.ChargeSucceeded:
			cmd = domain.RecoverPayment{InvoiceID: inv.InvoiceID}
		case final:
			cmd = domain.EndDunning{InvoiceID: inv.InvoiceID, MarkUnpaid: s.dunning.MarkUnpaid}
		default:
			cmd = domain.MarkPastDue{InvoiceID: inv.InvoiceID}
		}
		sub, _, err = appendSubscription(ctx, tx, meta, sub, cmd, later(at, sub.UpdatedAt))
		if err != nil && !ignorable(err) {
			return err
		}
		return ScheduleSubscription(ctx, tx, subID, sub)
	})
}

// charge asks the gateway for a charge and turns a timeout into the charge's actual outcome by
// looking it up. Without a payment method there is nothing to ask: it is a decline.
func (s *Service) charge(ctx context.Context, req domain.ChargeRequest) (domain.Charge, error) {
	if req.PaymentMethod == "" {
		return domain.Charge{IdempotencyKey: req.IdempotencyKey, Status: domain.ChargeDeclined, Currency: req.Currency,
			DeclineCode: domain.DeclineNoPaymentMethod, DeclineMessage: "no payment method on file"}, nil
	}
	c, err := s.gateway.Charge(ctx, req)
	if errors.Is(err, domain.ErrGatewayTimeout) {
		s.log.WarnContext(ctx, "charge timed out; looking it up", "idempotency_key", req.IdempotencyKey)
		c, err = s.gateway.LookupCharge(ctx, req.IdempotencyKey)
		if errors.Is(err, domain.ErrChargeNotFound) {
			// The provider has not recorded it (yet): charging again with the same key is safe.
			c, err = s.gateway.Charge(ctx, req)
		}
	}
	if err != nil {
		return domain.Charge{}, fmt.Errorf("charge %s: %w", req.IdempotencyKey, err)
	}
	return c, nil
}
