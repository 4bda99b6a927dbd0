package billing

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	return s.CollectMany(ctx, []uuid.UUID{id})
}

// CollectMany is Collect for several invoices, sharing the reads and the recording: the
// invoices and their subscriptions are read in one query each, the attempts are made one by one
// (a gateway takes one charge per call), and their outcomes are recorded in one transaction.
// If that transaction fails, each outcome is recorded in a transaction of its own, so one
// invoice's failure holds back no other. Of several invoices of one subscription, the first is
// collected with the others and the rest after it, one at a time: a final decline of one may
// end the subscription, which the next attempt must see.
func (s *Service) CollectMany(ctx context.Context, ids []uuid.UUID) error {
	invoices, err := eventstore.LoadInvoices(ctx, s.db, ids)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	var (
		idle    []scheduleRow // invoices with no attempt due: their rows are put right
		due     []payment
		after   []uuid.UUID // a second invoice of a subscription
		claimed = map[uuid.UUID]bool{}
	)
	for _, id := range ids {
		inv := invoices[id]
		if !inv.Collectible() || inv.NextAttemptAt.After(now) {
			idle = append(idle, invoiceDue(id, inv))
			continue
		}
		subID, err := uuid.Parse(inv.SubscriptionID)
		if err != nil {
			return fmt.Errorf("invoice %s: subscription id: %w", id, err)
		}
		if claimed[subID] {
			after = append(after, id)
			continue
		}
		claimed[subID] = true
		due = append(due, payment{id: id, subscription: subID, inv: inv})
	}
	if err := setSchedule(ctx, s.db, idle); err != nil {
		return err
	}
	var errs []error
	if len(due) > 0 {
		errs = append(errs, s.attempt(ctx, due))
	}
	for _, id := range after {
		errs = append(errs, s.Collect(ctx, id))
	}
	return errors.Join(errs...)
}

// payment is an attempt at an invoice: due, then made (charge), then recorded.
type payment struct {
	id, subscription uuid.UUID
	inv              domain.Invoice // as it was when the attempt was found due
	charge           domain.Charge
}

// number is the attempt's number: the invoice's attempts so far, plus one.
func (p payment) number() int { return p.inv.Attempts + 1 }

// at is when the attempt is recorded as made: when it was due, or the invoice's last change if
// that was later.
func (p payment) at() time.Time { return later(p.inv.NextAttemptAt, p.inv.UpdatedAt) }

// attempt makes the due attempts (of different subscriptions) and records them.
func (s *Service) attempt(ctx context.Context, due []payment) error {
	subIDs := make([]uuid.UUID, len(due))
	for i, p := range due {
		subIDs[i] = p.subscription
	}
	subs, err := eventstore.LoadSubscriptions(ctx, s.db, subIDs)
	if err != nil {
		return err
	}
	var errs []error
	made := make([]payment, 0, len(due))
	started := time.Now()
	for i, p := range due {
		if time.Since(started) > s.lease/2 {
			// A slow gateway: the rest are given back before their lease runs out, for whichever
			// process claims them next, rather than charged by two processes at once.
			errs = append(errs, s.giveBack(ctx, due[i:]))
			break
		}
		inv := p.inv
		key := fmt.Sprintf("invoice:%s:attempt:%d", p.id, p.number())
		// An attempt a process made and died (or lost the database) before recording is recorded
		// as it was made. Making it again would charge the subscription's payment method of now,
		// which may have changed since: a different request under the same key, refused by the
		// gateway every time, so the invoice would stay open and the money taken unrecorded.
		charge, err := s.gateway.LookupCharge(ctx, key)
		if errors.Is(err, domain.ErrChargeNotFound) {
			charge, err = s.charge(ctx, domain.ChargeRequest{
				IdempotencyKey: key,
				PaymentMethod:  subs[p.subscription].PaymentMethod, CustomerID: inv.CustomerID, Amount: inv.Total,
				Currency: inv.Currency, Description: "Invoice " + inv.Number,
			})
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.charge = charge
		made = append(made, p)
	}
	if err := s.faultAt("collect:charged"); err != nil {
		return err
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error { return s.record(ctx, tx, made) })
	if err != nil && len(made) > 1 {
		err = nil
		for _, p := range made {
			errs = append(errs, s.inTx(ctx, func(tx pgx.Tx) error { return s.record(ctx, tx, []payment{p}) }))
		}
	}
	return errors.Join(append(errs, err)...)
}

// giveBack releases the collect rows of attempts not made, as they are.
func (s *Service) giveBack(ctx context.Context, due []payment) error {
	rows := make([]scheduleRow, len(due))
	for i, p := range due {
		rows[i] = invoiceDue(p.id, p.inv)
	}
	return setSchedule(ctx, s.db, rows)
}

// record records payments, each with what it means for its subscription, in tx. An attempt
// already recorded (by another process) is passed over.
func (s *Service) record(ctx context.Context, tx pgx.Tx, payments []payment) error {
	if len(payments) == 0 {
		return nil
	}
	ids, subIDs := make([]uuid.UUID, len(payments)), make([]uuid.UUID, len(payments))
	for i, p := range payments {
		ids[i], subIDs[i] = p.id, p.subscription
	}
	invoices, err := eventstore.LoadInvoices(ctx, tx, ids)
	if err != nil {
		return err
	}
	subs, err := eventstore.LoadSubscriptions(ctx, tx, subIDs)
	if err != nil {
		return err
	}
	w := NewWrites(tx)
	for _, p := range payments {
		inv := invoices[p.id]
		if inv.Attempts+1 != p.number() {
			continue // another process recorded this attempt
		}
		at := p.at()
		outcome, err := domain.RecordPayment(inv, p.charge, p.number(), s.dunning, at)
		if err != nil {
			return err
		}
		events := []domain.Event{outcome}
		failed, final := outcome.(domain.InvoicePaymentFailed)
		final = final && failed.NextAttemptAt == nil
		if final {
			events = append(events, domain.InvoiceMarkedUncollectible{At: at})
		}
		meta := processMeta("payment collection", "invoice:"+p.id.String())
		if err := w.Append(eventstore.InvoiceStream, p.id, inv.Version, meta, events...); err != nil {
			return err
		}
		for _, e := range events {
			inv = domain.EvolveInvoice(inv, e)
		}
		w.setDue(invoiceDue(p.id, inv))

		var cmd domain.Command
		switch {
		case p.charge.Status == domain.ChargeSucceeded:
			cmd = domain.RecoverPayment{InvoiceID: inv.InvoiceID}
		case final:
			cmd = domain.EndDunning{InvoiceID: inv.InvoiceID, MarkUnpaid: s.dunning.MarkUnpaid}
		default:
			cmd = domain.MarkPastDue{InvoiceID: inv.InvoiceID}
		}
		sub := subs[p.subscription]
		changes, err := domain.Decide(sub, cmd, later(at, sub.UpdatedAt))
		if err != nil && !ignorable(err) {
			return err
		}
		if len(changes) == 0 {
			continue // the subscription, and so its schedule, stays as it is
		}
		if err := w.Append(eventstore.SubscriptionStream, p.subscription, sub.Version, meta, changes...); err != nil {
			return err
		}
		for _, e := range changes {
			sub = domain.Evolve(sub, e)
		}
		subs[p.subscription] = sub
		w.setDue(subscriptionDues(p.subscription, sub)...)
	}
	return w.Flush(ctx)
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
