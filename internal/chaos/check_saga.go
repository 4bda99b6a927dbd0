package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
)

// gatewayCharge is a row of the sandbox gateway's sandbox_charges (migration 000009): what the
// payment provider holds, independent of billing's events.
type gatewayCharge struct {
	Key      string
	ID       string
	Amount   int64
	Status   string
	Refunded int64
}

// sagas: no upgrade was left charged but not upgraded, and money moved as the books say.
//
//   - every upgrade saga ended (completed or aborted);
//   - a completed one whose invoice cost money was charged (sandbox_charges, key
//     upgrade:<id>, succeeded, the amount recorded, nothing refunded), and its change was
//     applied exactly at the subscription version it was priced against: the subscription
//     event at the recorded version is the saga's change;
//   - an aborted one that the gateway charged was refunded in full (sandbox_refunds, key
//     upgrade-refund:<id>);
//   - every invoice's amount paid per its fold is the sum of the succeeded charges made for it
//     (keys invoice:<id>:attempt:<n> of internal/billing/collect.go, and upgrade:<id> of its
//     upgrade), and its amount refunded the sum of those charges' refunds; and no succeeded
//     charge names an invoice or upgrade the store does not have.
func (c *checker) sagas(ctx context.Context) error {
	charges, err := c.gatewayCharges(ctx)
	if err != nil {
		return err
	}
	refunds, err := c.gatewayRefunds(ctx)
	if err != nil {
		return err
	}
	for _, id := range sortedIDs(c.store, c.store.upgrades) {
		u := c.store.upgrades[id]
		charge, charged := charges["upgrade:"+u.UpgradeID]
		charged = charged && charge.Status == "succeeded"
		switch u.Status {
		case domain.UpgradeCompletedStatus:
			if u.InvoiceTotal > 0 && (!charged || charge.ID != u.ChargeID || charge.Amount != u.Charged || charge.Refunded != 0) {
				c.report(CheckSaga, "upgrade %s completed with charge %q of %d; the gateway holds %+v", id, u.ChargeID, u.Charged, charge)
			}
			c.appliedAsPriced(id, u)
		case domain.UpgradeAbortedStatus:
			if charged {
				refund, ok := refunds["upgrade-refund:"+u.UpgradeID]
				if !ok || refund.chargeID != charge.ID || refund.amount != charge.Amount {
					c.report(CheckSaga, "upgrade %s aborted (%s) after the gateway charged %d (%s); refund: %+v",
						id, u.Reason, charge.Amount, charge.ID, refund)
				}
			}
		default:
			c.report(CheckSaga, "upgrade %s of subscription %s is left %s (version %d)", id, u.SubscriptionID, u.Status, u.Version)
		}
	}
	c.money(charges, refunds)
	return nil
}

// appliedAsPriced: the subscription event at the upgrade's applied version is its change,
// appended after the version it was priced against with nothing in between but other changes'
// subscription.upgrade_failed (which alter nothing the price depends on).
func (c *checker) appliedAsPriced(id uuid.UUID, u domain.Upgrade) {
	subID, err := uuid.Parse(u.SubscriptionID)
	if err != nil {
		c.report(CheckSaga, "upgrade %s: subscription id %q", id, u.SubscriptionID)
		return
	}
	events := c.store.streams[subID]
	if u.AppliedVersion <= u.SubscriptionVersion || u.AppliedVersion > int64(len(events)) || u.SubscriptionVersion < 0 {
		c.report(CheckSaga, "upgrade %s priced at subscription version %d, applied at %d (the stream has %d events)",
			id, u.SubscriptionVersion, u.AppliedVersion, len(events))
		return
	}
	for _, between := range events[u.SubscriptionVersion : u.AppliedVersion-1] {
		if between.Type != (domain.UpgradeFailed{}).EventType() {
			c.report(CheckSaga, "upgrade %s priced at subscription version %d, applied at %d after %s at version %d",
				id, u.SubscriptionVersion, u.AppliedVersion, between.Type, between.Version)
		}
	}
	applied := events[u.AppliedVersion-1]
	want, _ := json.Marshal(u.Change())
	got, _ := json.Marshal(c.store.decoded[applied.ID])
	if applied.Type != u.Change().EventType() || string(got) != string(want) {
		c.report(CheckSaga, "upgrade %s: subscription %s's version %d is %s %s, not the change priced %s",
			id, subID, u.AppliedVersion, applied.Type, got, want)
	}
}

type gatewayRefund struct {
	chargeID string
	amount   int64
}

// money compares each invoice's fold with the gateway's records.
func (c *checker) money(charges map[string]gatewayCharge, refunds map[string]gatewayRefund) {
	refundedByCharge := map[string]int64{}
	for _, r := range refunds {
		refundedByCharge[r.chargeID] += r.amount
	}
	type paid struct{ charged, refunded int64 }
	byInvoice := map[uuid.UUID]paid{}
	upgradeInvoice := map[string]uuid.UUID{}
	for id, inv := range c.store.invoices {
		if inv.UpgradeID != "" {
			upgradeInvoice[inv.UpgradeID] = id
		}
	}
	for _, ch := range charges {
		if ch.Status != "succeeded" {
			continue
		}
		var invoice uuid.UUID
		var ok bool
		if rest, isInvoice := strings.CutPrefix(ch.Key, "invoice:"); isInvoice {
			id, _, _ := strings.Cut(rest, ":")
			var err error
			invoice, err = uuid.Parse(id)
			_, ok = c.store.invoices[invoice]
			ok = ok && err == nil
		} else if upgrade, isUpgrade := strings.CutPrefix(ch.Key, "upgrade:"); isUpgrade {
			invoice, ok = upgradeInvoice[upgrade]
		}
		if !ok {
			c.report(CheckSaga, "the gateway charged %d under key %s (%s) for no invoice in the store", ch.Amount, ch.Key, ch.ID)
			continue
		}
		p := byInvoice[invoice]
		p.charged += ch.Amount
		p.refunded += refundedByCharge[ch.ID]
		byInvoice[invoice] = p
	}
	for _, id := range sortedIDs(c.store, c.store.invoices) {
		inv := c.store.invoices[id]
		if got := byInvoice[id]; got.charged != inv.AmountPaid || got.refunded != inv.AmountRefunded {
			c.report(CheckSaga, "invoice %s (%s, %s) folds to paid %d, refunded %d; the gateway charged %d, refunded %d",
				id, inv.Number, inv.Status, inv.AmountPaid, inv.AmountRefunded, got.charged, got.refunded)
		}
	}
}

func (c *checker) gatewayCharges(ctx context.Context) (map[string]gatewayCharge, error) {
	rows, err := c.db.Query(ctx, `SELECT idempotency_key, id, amount, status, amount_refunded FROM sandbox_charges`)
	if err != nil {
		return nil, fmt.Errorf("check: read sandbox_charges: %w", err)
	}
	out := map[string]gatewayCharge{}
	var ch gatewayCharge
	if _, err := pgx.ForEachRow(rows, []any{&ch.Key, &ch.ID, &ch.Amount, &ch.Status, &ch.Refunded},
		func() error { out[ch.Key] = ch; return nil }); err != nil {
		return nil, fmt.Errorf("check: read sandbox_charges: %w", err)
	}
	return out, nil
}

func (c *checker) gatewayRefunds(ctx context.Context) (map[string]gatewayRefund, error) {
	rows, err := c.db.Query(ctx, `SELECT idempotency_key, charge_id, amount FROM sandbox_refunds`)
	if err != nil {
		return nil, fmt.Errorf("check: read sandbox_refunds: %w", err)
	}
	out := map[string]gatewayRefund{}
	var key string
	var r gatewayRefund
	if _, err := pgx.ForEachRow(rows, []any{&key, &r.chargeID, &r.amount}, func() error { out[key] = r; return nil }); err != nil {
		return nil, fmt.Errorf("check: read sandbox_refunds: %w", err)
	}
	return out, nil
}
