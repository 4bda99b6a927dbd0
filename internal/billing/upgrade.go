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

// The upgrade saga: a change that costs money (domain.PaidChange) is invoiced, charged, applied,
// and waited for until its features are visible, each step a transaction on the upgrade's own
// stream (expected versions make two processes driving one saga harmless). A decline voids the
// invoice; a change that can no longer be applied after the charge (the subscription moved on)
// is refunded and voided. Either way subscription.upgrade_failed says why. The saga's row in
// billing_schedule lets any process resume it after a crash.

// errUpgradeBlocked stops a drive that must wait (an unknown charge outcome, entitlements not yet
// visible): the saga stays due and is resumed later.
var errUpgradeBlocked = errors.New("upgrade waits for something outside the service")

// StartUpgrade begins a saga for change (a PlanChanged or SeatsChanged decided against sub, whose
// proration totals amount > 0), in tx: the caller's transaction, so the request's idempotency
// record and the saga commit together. The caller drives it with AdvanceUpgrade after commit;
// lease (the service's, Service.Lease) covers a caller that dies, or cannot reach the database,
// before its first step: the saga waits that long for another process to resume it.
func StartUpgrade(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, sub domain.Subscription, change domain.Event, amount int64,
	lease time.Duration) (uuid.UUID, error) {
	id := uuid.Must(uuid.NewV7())
	started := domain.UpgradeStarted{UpgradeID: id.String(), SubscriptionID: sub.ID, CustomerID: sub.CustomerID,
		SubscriptionVersion: sub.Version, Amount: amount, Currency: sub.Plan.Currency,
		PaymentMethod: sub.PaymentMethod, StartedAt: change.OccurredAt()}
	switch c := change.(type) {
	case domain.PlanChanged:
		started.PlanChange = &c
	case domain.SeatsChanged:
		started.SeatsChange = &c
	default:
		return uuid.Nil, fmt.Errorf("start upgrade: %s is not a paid change", change.EventType())
	}
	if err := appendEvents(ctx, tx, eventstore.UpgradeStream, id, 0, meta, started); err != nil {
		return uuid.Nil, err
	}
	return id, scheduleUpgrade(ctx, tx, id, domain.EvolveUpgrade(domain.Upgrade{}, started), lease)
}

// AdvanceUpgrade drives the saga as far as it can go now: to completed or aborted, or until it
// must wait (the gateway's outcome unknown, the entitlements read model behind, ctx done), in
// which case it returns the state reached and no error. An error means a step failed; the saga
// stays due and is resumed later, from the last step recorded.
func (s *Service) AdvanceUpgrade(ctx context.Context, id uuid.UUID) (domain.Upgrade, error) {
	for {
		u, meta, err := loadUpgrade(ctx, s.db, id)
		if err != nil || u.Done() {
			return u, err
		}
		meta.Source, meta.CausationID = "upgrade saga", id.String()
		err = s.step(ctx, u, meta)
		switch {
		case errors.Is(err, errUpgradeBlocked) || (err != nil && ctx.Err() != nil):
			return loadUpgradeState(ctx, s.db, id, u)
		case eventstore.Retryable(err):
			// Lost a race on a stream the step shares (the customer's invoice series, say)
			// more often than inTx retries: the step decides again from what won.
			continue
		case err != nil:
			return u, err
		}
	}
}

// step takes the saga one step from where it is.
func (s *Service) step(ctx context.Context, u domain.Upgrade, meta eventstore.Metadata) error {
	if err := s.faultAt("upgrade:before-" + string(u.Status)); err != nil {
		return err
	}
	var err error
	switch u.Status {
	case domain.UpgradeStartedStatus:
		err = s.upgradeInvoice(ctx, u, meta)
	case domain.UpgradeInvoicedStatus:
		err = s.upgradeCharge(ctx, u, meta)
	case domain.UpgradeChargedStatus:
		err = s.upgradeApply(ctx, u, meta)
	case domain.UpgradePlanAppliedStatus:
		err = s.upgradeComplete(ctx, u)
	case domain.UpgradeCompensatingStatus:
		err = s.upgradeRefund(ctx, u, meta)
	default:
		err = fmt.Errorf("upgrade %s: unknown status %q", u.UpgradeID, u.Status)
	}
	if err != nil {
		return err
	}
	return s.faultAt("upgrade:after-" + string(u.Status))
}

// upgradeInvoice issues the proration invoice, unless the subscription changed since the change
// was priced (then the upgrade is aborted before anything was charged).
func (s *Service) upgradeInvoice(ctx context.Context, u domain.Upgrade, meta eventstore.Metadata) error {
	return s.upgradeTx(ctx, u, func(tx pgx.Tx, at time.Time) ([]domain.Event, error) {
		sub, err := s.loadSubscription(ctx, tx, u)
		if err != nil {
			return nil, err
		}
		if moved, err := movedOn(ctx, tx, u, sub); err != nil || moved {
			if err != nil {
				return nil, err
			}
			return s.abort(ctx, tx, meta, u, domain.UpgradeAborted{Reason: domain.UpgradeReasonConflict, At: at})
		}
		lines, _ := domain.ProrationOf(u.Change())
		req := domain.InvoiceRequest{InvoiceID: uuid.Must(uuid.NewV7()).String(), SubscriptionID: u.SubscriptionID,
			CustomerID: u.CustomerID, Currency: u.Currency, Reason: domain.InvoiceForUpdate, Lines: lines,
			PeriodStart: lines[0].PeriodStart, PeriodEnd: lines[0].PeriodEnd, UpgradeID: u.UpgradeID}
		inv, err := issueInvoice(ctx, tx, meta, req, at)
		if err != nil {
			return nil, err
		}
		return []domain.Event{domain.UpgradeInvoiced{InvoiceID: inv.InvoiceID, Total: inv.Total, At: at}}, nil
	})
}

// upgradeCharge charges the invoice (key upgrade:<id>: a repeat after a crash returns the same
// charge) and records the outcome; a decline aborts the upgrade and voids the invoice.
func (s *Service) upgradeCharge(ctx context.Context, u domain.Upgrade, meta eventstore.Metadata) error {
	key := "upgrade:" + u.UpgradeID
	charge := domain.Charge{Status: domain.ChargeSucceeded}
	if u.InvoiceTotal > 0 {
		// A charge made by a process that died (or lost the database) before recording it is
		// recorded now, whatever the subscription did since: aborting below would leave it
		// taken and never refunded. If the change can no longer be applied, the apply step
		// refunds it.
		made, err := s.gateway.LookupCharge(ctx, key)
		switch {
		case err == nil:
			return s.recordUpgradeCharge(ctx, u, meta, made)
		case !errors.Is(err, domain.ErrChargeNotFound):
			return err
		}
	}
	// Charging for a change that can no longer be applied only to refund it is a poor experience
	// (and costs fees): if the subscription already moved on, abort before charging. The check
	// at the apply step still covers a change that lands between here and there.
	sub, err := s.loadSubscription(ctx, s.db, u)
	if err != nil {
		return err
	}
	if moved, err := movedOn(ctx, s.db, u, sub); err != nil {
		return err
	} else if moved {
		return s.upgradeTx(ctx, u, func(tx pgx.Tx, at time.Time) ([]domain.Event, error) {
			return s.abort(ctx, tx, meta, u, domain.UpgradeAborted{Reason: domain.UpgradeReasonConflict, At: at})
		})
	}
	if u.InvoiceTotal > 0 {
		var err error
		charge, err = s.charge(ctx, domain.ChargeRequest{IdempotencyKey: key,
			PaymentMethod: u.PaymentMethod, CustomerID: u.CustomerID, Amount: u.InvoiceTotal, Currency: u.Currency,
			Description: "Upgrade " + u.UpgradeID})
		if errors.Is(err, domain.ErrGatewayTimeout) {
			return errUpgradeBlocked
		}
		if err != nil {
			return err
		}
		if err := s.faultAt("upgrade:charged-unrecorded"); err != nil {
			return err
		}
	}
	return s.recordUpgradeCharge(ctx, u, meta, charge)
}

// recordUpgradeCharge records the charge's outcome on the invoice and the saga; a decline aborts
// the upgrade and voids the invoice.
func (s *Service) recordUpgradeCharge(ctx context.Context, u domain.Upgrade, meta eventstore.Metadata, charge domain.Charge) error {
	return s.upgradeTx(ctx, u, func(tx pgx.Tx, at time.Time) ([]domain.Event, error) {
		inv, err := s.loadInvoice(ctx, tx, u.InvoiceID)
		if err != nil {
			return nil, err
		}
		if u.InvoiceTotal == 0 { // paid by credit when issued
			return []domain.Event{domain.UpgradeCharged{At: at}}, nil
		}
		outcome, err := domain.RecordPayment(inv, charge, inv.Attempts+1, s.dunning, at)
		if err != nil {
			return nil, err
		}
		if charge.Status != domain.ChargeSucceeded {
			return s.abort(ctx, tx, meta, u, domain.UpgradeAborted{Reason: domain.UpgradeReasonDeclined,
				DeclineCode: charge.DeclineCode, At: at}, outcome)
		}
		if _, err := appendInvoice(ctx, tx, meta, inv, outcome); err != nil {
			return nil, err
		}
		return []domain.Event{domain.UpgradeCharged{ChargeID: charge.ID, Amount: charge.Amount, At: at}}, nil
	})
}

// upgradeApply appends the priced change at the version it was priced against; if the
// subscription moved on meanwhile, the charge must be refunded instead.
func (s *Service) upgradeApply(ctx context.Context, u domain.Upgrade, meta eventstore.Metadata) error {
	return s.upgradeTx(ctx, u, func(tx pgx.Tx, at time.Time) ([]domain.Event, error) {
		sub, err := s.loadSubscription(ctx, tx, u)
		if err != nil {
			return nil, err
		}
		if moved, err := movedOn(ctx, tx, u, sub); err != nil || moved {
			if err != nil {
				return nil, err
			}
			return []domain.Event{domain.UpgradeCompensating{Reason: domain.UpgradeReasonConflict, At: at}}, nil
		}
		change := u.Change()
		if err := appendEvents(ctx, tx, eventstore.SubscriptionStream, uuid.MustParse(u.SubscriptionID), sub.Version, meta, change); err != nil {
			return nil, err
		}
		sub = domain.Evolve(sub, change)
		if err := ScheduleSubscription(ctx, tx, uuid.MustParse(u.SubscriptionID), sub); err != nil {
			return nil, err
		}
		return []domain.Event{domain.UpgradePlanApplied{SubscriptionVersion: sub.Version, At: at}}, nil
	})
}

// upgradeComplete waits until the entitlements read model shows the change, then completes.
func (s *Service) upgradeComplete(ctx context.Context, u domain.Upgrade) error {
	if s.visible != nil {
		for {
			ok, err := s.visible(ctx, uuid.MustParse(u.SubscriptionID), u.AppliedVersion)
			if err != nil {
				return err
			}
			if ok {
				break
			}
			select {
			case <-ctx.Done():
				return errUpgradeBlocked
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return s.upgradeTx(ctx, u, func(_ pgx.Tx, at time.Time) ([]domain.Event, error) {
		return []domain.Event{domain.UpgradeCompleted{At: at}}, nil
	})
}

// upgradeRefund refunds the charge of an upgrade that cannot be applied, then voids its invoice.
func (s *Service) upgradeRefund(ctx context.Context, u domain.Upgrade, meta eventstore.Metadata) error {
	var refund domain.Refund
	if u.ChargeID != "" {
		var err error
		refund, err = s.gateway.Refund(ctx, domain.RefundRequest{IdempotencyKey: "upgrade-refund:" + u.UpgradeID,
			ChargeID: u.ChargeID, Amount: u.Charged})
		if err != nil {
			return fmt.Errorf("refund upgrade %s: %w", u.UpgradeID, err)
		}
		if err := s.faultAt("upgrade:refunded-unrecorded"); err != nil {
			return err
		}
	}
	return s.upgradeTx(ctx, u, func(tx pgx.Tx, at time.Time) ([]domain.Event, error) {
		var refunded []domain.Event
		if refund.ID != "" {
			refunded = append(refunded, domain.InvoiceRefunded{RefundID: refund.ID, ChargeID: refund.ChargeID, Amount: refund.Amount, RefundedAt: at})
		}
		return s.abort(ctx, tx, meta, u, domain.UpgradeAborted{Reason: u.Reason, RefundID: refund.ID, At: at}, refunded...)
	})
}

// abort ends the saga: the invoice (if issued) gets invoiceEvents and is voided with its credit
// returned, and the subscription records subscription.upgrade_failed.
func (s *Service) abort(ctx context.Context, tx pgx.Tx, meta eventstore.Metadata, u domain.Upgrade,
	aborted domain.UpgradeAborted, invoiceEvents ...domain.Event) ([]domain.Event, error) {
	if u.InvoiceID != "" {
		inv, err := s.loadInvoice(ctx, tx, u.InvoiceID)
		if err != nil {
			return nil, err
		}
		if _, err := voidInvoice(ctx, tx, meta, inv, "upgrade "+aborted.Reason, aborted.At, invoiceEvents...); err != nil {
			return nil, err
		}
	}
	sub, err := s.loadSubscription(ctx, tx, u)
	if err != nil {
		return nil, err
	}
	plan, seats := u.Target(sub.Plan)
	failed := domain.RecordUpgradeFailed{UpgradeID: u.UpgradeID, Plan: plan, Seats: seats, Reason: aborted.Reason, DeclineCode: aborted.DeclineCode}
	if _, _, err := appendSubscription(ctx, tx, meta, sub, failed, aborted.At); err != nil {
		return nil, err
	}
	return []domain.Event{aborted}, nil
}

// upgradeTx runs one step: fn decides the saga's next events (and writes what else the step
// changes) in a transaction that appends them at the saga's version.
func (s *Service) upgradeTx(ctx context.Context, u domain.Upgrade, fn func(tx pgx.Tx, at time.Time) ([]domain.Event, error)) error {
	id := uuid.MustParse(u.UpgradeID)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		current, meta, err := loadUpgrade(ctx, tx, id)
		if err != nil {
			return err
		}
		if current.Version != u.Version {
			return nil // another process took this step; the caller reloads
		}
		meta.Source, meta.CausationID = "upgrade saga", u.UpgradeID
		events, err := fn(tx, later(s.clock.Now(), u.UpdatedAt))
		if err != nil {
			return err
		}
		if err := appendEvents(ctx, tx, eventstore.UpgradeStream, id, u.Version, meta, events...); err != nil {
			return err
		}
		for _, e := range events {
			current = domain.EvolveUpgrade(current, e)
		}
		return scheduleUpgrade(ctx, tx, id, current, s.lease)
	})
}

// movedOn reports whether sub (the subscription now) changed since the saga priced its change
// in a way that could change the price: by any event after the priced version other than
// subscription.upgrade_failed, which records another change's failure and alters nothing. Without
// that exception each aborted saga would abort every other saga priced at the same version: with
// many paid changes racing on one subscription, nearly all of them aborted.
func movedOn(ctx context.Context, q eventstore.Querier, u domain.Upgrade, sub domain.Subscription) (bool, error) {
	if sub.Version == u.SubscriptionVersion {
		return false, nil
	}
	since, err := eventstore.Load(ctx, q, uuid.MustParse(u.SubscriptionID),
		eventstore.LoadOptions{AfterVersion: u.SubscriptionVersion, UpToVersion: sub.Version})
	if err != nil {
		return false, err
	}
	for _, e := range since {
		if e.Type != (domain.UpgradeFailed{}).EventType() {
			return true, nil
		}
	}
	return len(since) == 0, nil // fewer events than versions: a stream we cannot reason about
}

func (s *Service) loadSubscription(ctx context.Context, q eventstore.Querier, u domain.Upgrade) (domain.Subscription, error) {
	sub, _, err := eventstore.LoadSubscriptionWithSnapshot(ctx, q, uuid.MustParse(u.SubscriptionID))
	return sub, err
}

func (s *Service) loadInvoice(ctx context.Context, tx pgx.Tx, id string) (domain.Invoice, error) {
	invoiceID, err := uuid.Parse(id)
	if err != nil {
		return domain.Invoice{}, fmt.Errorf("invoice id %q: %w", id, err)
	}
	inv, err := eventstore.LoadInvoice(ctx, tx, invoiceID)
	if err == nil && !inv.Exists() {
		err = fmt.Errorf("invoice %s: %w", id, domain.ErrInvoiceNotFound)
	}
	return inv, err
}

// loadUpgrade folds the saga and returns the metadata of the request that started it: later steps
// carry its actor and correlation id, so the audit trail ties them to that request.
func loadUpgrade(ctx context.Context, q eventstore.Querier, id uuid.UUID) (domain.Upgrade, eventstore.Metadata, error) {
	events, err := eventstore.Load(ctx, q, id, eventstore.LoadOptions{})
	if err != nil || len(events) == 0 {
		return domain.Upgrade{}, eventstore.Metadata{}, err
	}
	var u domain.Upgrade
	for _, e := range events {
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			return domain.Upgrade{}, eventstore.Metadata{}, err
		}
		u = domain.EvolveUpgrade(u, de)
	}
	return u, events[0].Metadata, nil
}

// loadUpgradeState reloads the saga after a drive stopped; if even that fails, the last state seen
// is the best answer.
func loadUpgradeState(ctx context.Context, q eventstore.Querier, id uuid.UUID, last domain.Upgrade) (domain.Upgrade, error) {
	u, _, err := loadUpgrade(context.WithoutCancel(ctx), q, id)
	if err != nil {
		return last, nil
	}
	return u, nil
}

// LoadUpgrade returns an upgrade saga's state (domain.ErrUpgradeNotFound if there is none).
func LoadUpgrade(ctx context.Context, q eventstore.Querier, id uuid.UUID) (domain.Upgrade, error) {
	u, _, err := loadUpgrade(ctx, q, id)
	if err == nil && !u.Exists() {
		err = domain.ErrUpgradeNotFound
	}
	return u, err
}
