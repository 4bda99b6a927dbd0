package billing

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
)

var errCrash = errors.New("injected crash")

// upgradeEnv is a subscription on Pro × 2, its first invoice paid, 10 days into its period.
func upgradeEnv(t *testing.T, paymentMethod string) (*env, uuid.UUID) {
	e := newEnv(t)
	id := e.create("cus_up", "pro_monthly", 2, "pm_card_ok", 0)
	e.advance(start)
	if paymentMethod != "pm_card_ok" {
		e.command(id, domain.ChangePaymentMethod{PaymentMethod: paymentMethod})
	}
	e.clock.Set(start.AddDate(0, 0, 10))
	return e, id
}

func (e *env) upgradeTo(id uuid.UUID, planID string) uuid.UUID {
	e.t.Helper()
	plan, _ := domain.DefaultCatalog().Plan(planID)
	up := e.command(id, domain.ChangePlan{Plan: plan})
	if up == uuid.Nil {
		e.t.Fatalf("the change to %s started no upgrade", planID)
	}
	return up
}

func TestUpgradeCompletes(t *testing.T) {
	e, id := upgradeEnv(t, "pm_card_ok")
	up := e.upgradeTo(id, "business_monthly")
	u, err := e.svc.AdvanceUpgrade(context.Background(), up)
	if err != nil || u.Status != domain.UpgradeCompletedStatus {
		t.Fatalf("upgrade: %s, %v", u.Status, err)
	}
	sub, invoices := e.subscription(id), e.invoices(id)
	if sub.Plan.PlanID != "business_monthly" {
		t.Errorf("plan %s after the upgrade", sub.Plan.PlanID)
	}
	inv := invoices[len(invoices)-1]
	if inv.Reason != domain.InvoiceForUpdate || inv.Status != domain.InvoicePaid || inv.Total != u.Amount || inv.UpgradeID != up.String() {
		t.Errorf("upgrade invoice %+v, want paid %d", inv, u.Amount)
	}
	if got, want := e.charged("cus_up"), invoices[0].Total+u.Amount; got != want {
		t.Errorf("charged %d, want %d", got, want)
	}
	if _, err := e.svc.AdvanceUpgrade(context.Background(), up); err != nil {
		t.Errorf("advancing a completed upgrade: %v", err)
	}
}

func TestUpgradeDeclinedChangesNothing(t *testing.T) {
	e, id := upgradeEnv(t, "pm_card_declined")
	before := e.subscription(id)
	up := e.upgradeTo(id, "business_monthly")
	u, err := e.svc.AdvanceUpgrade(context.Background(), up)
	if err != nil || u.Status != domain.UpgradeAbortedStatus || u.Reason != domain.UpgradeReasonDeclined || u.DeclineCode != domain.DeclineCardDeclined {
		t.Fatalf("upgrade: %+v, %v", u, err)
	}
	after := e.subscription(id)
	if after.Plan.PlanID != before.Plan.PlanID || after.Seats != before.Seats || after.Version != before.Version+1 {
		t.Errorf("subscription changed: %s × %d v%d, was %s × %d v%d", after.Plan.PlanID, after.Seats, after.Version,
			before.Plan.PlanID, before.Seats, before.Version)
	}
	if types := e.eventTypes(id); types[len(types)-1] != "subscription.upgrade_failed" {
		t.Errorf("last subscription event %s, want subscription.upgrade_failed", types[len(types)-1])
	}
	invoices := e.invoices(id)
	if inv := invoices[len(invoices)-1]; inv.Status != domain.InvoiceVoid || inv.AmountPaid != 0 || inv.Attempts != 1 {
		t.Errorf("upgrade invoice %s, paid %d after %d attempts; want void and unpaid", inv.Status, inv.AmountPaid, inv.Attempts)
	}
	if got := e.charged("cus_up"); got != invoices[0].Total {
		t.Errorf("charged %d, want only the first invoice's %d", got, invoices[0].Total)
	}
}

// TestUpgradeSurvivesACrashAtEveryStep kills the saga (as a crash would: the step's work stops
// there) at every boundary, then resumes it from another process. Whatever the point, the saga
// ends completed, charged exactly once, and upgraded: never one without the other.
func TestUpgradeSurvivesACrashAtEveryStep(t *testing.T) {
	points := []string{
		"upgrade:before-started", "upgrade:after-started",
		"upgrade:before-invoiced", "upgrade:charged-unrecorded", "upgrade:after-invoiced",
		"upgrade:before-charged", "upgrade:after-charged",
		"upgrade:before-plan_applied", "upgrade:after-plan_applied",
	}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			e, id := upgradeEnv(t, "pm_card_ok")
			up := e.upgradeTo(id, "business_monthly")
			crashOnce(e.svc, point)
			if _, err := e.svc.AdvanceUpgrade(context.Background(), up); !errors.Is(err, errCrash) {
				t.Fatalf("the crash at %s did not happen: %v", point, err)
			}
			e.checkUpgradeInvariants(t, id, up, false)

			u, err := e.process(e.db).AdvanceUpgrade(context.Background(), up)
			if err != nil || u.Status != domain.UpgradeCompletedStatus {
				t.Fatalf("resumed upgrade: %s, %v", u.Status, err)
			}
			e.checkUpgradeInvariants(t, id, up, true)
		})
	}
}

// TestUpgradeCompensationSurvivesACrash: the subscription changes after the charge, so the saga
// must refund; it is killed after the refund, before recording it, and resumed.
func TestUpgradeCompensationSurvivesACrash(t *testing.T) {
	for _, point := range []string{"upgrade:before-compensating", "upgrade:refunded-unrecorded", "upgrade:after-compensating"} {
		t.Run(point, func(t *testing.T) {
			e, id := upgradeEnv(t, "pm_card_ok")
			up := e.upgradeTo(id, "business_monthly")
			crashOnce(e.svc, "upgrade:before-charged") // stop once charged, before applying
			if _, err := e.svc.AdvanceUpgrade(context.Background(), up); !errors.Is(err, errCrash) {
				t.Fatalf("no crash before applying: %v", err)
			}
			e.command(id, domain.Pause{}) // the subscription moves on
			crashOnce(e.svc, point)
			_, err := e.svc.AdvanceUpgrade(context.Background(), up)
			if !errors.Is(err, errCrash) {
				t.Fatalf("no crash at %s: %v", point, err)
			}
			u, err := e.process(e.db).AdvanceUpgrade(context.Background(), up)
			if err != nil || u.Status != domain.UpgradeAbortedStatus || u.Reason != domain.UpgradeReasonConflict || u.RefundID == "" {
				t.Fatalf("resumed: %+v, %v", u, err)
			}
			e.checkUpgradeInvariants(t, id, up, true)
		})
	}
}

// TestUpgradeChargedBeforeACrashIsRefundedWhenTheSubscriptionMovesOn: the saga charges and
// dies before recording the charge, and the subscription changes before another process
// resumes it. The charge was made, so it must be recorded and refunded; the check that aborts
// a saga whose subscription moved on before charging must not treat it as never made (that
// left the customer charged for a change that was never applied).
func TestUpgradeChargedBeforeACrashIsRefundedWhenTheSubscriptionMovesOn(t *testing.T) {
	e, id := upgradeEnv(t, "pm_card_ok")
	up := e.upgradeTo(id, "business_monthly")
	crashOnce(e.svc, "upgrade:charged-unrecorded")
	if _, err := e.svc.AdvanceUpgrade(context.Background(), up); !errors.Is(err, errCrash) {
		t.Fatalf("no crash after charging: %v", err)
	}
	e.command(id, domain.Pause{}) // the subscription moves on
	u, err := e.process(e.db).AdvanceUpgrade(context.Background(), up)
	if err != nil || u.Status != domain.UpgradeAbortedStatus || u.Reason != domain.UpgradeReasonConflict || u.RefundID == "" {
		t.Fatalf("resumed: %+v, %v; want aborted for the conflict, refunded", u, err)
	}
	e.checkUpgradeInvariants(t, id, up, true)
}

// TestUpgradeOutlivesAnotherUpgradesFailure: another change's subscription.upgrade_failed,
// recorded between pricing and applying, alters nothing the price depends on, so the upgrade
// still completes (applied after it). Before, every failed saga aborted every other saga priced
// at the same version, and paid changes racing on one subscription nearly all failed.
func TestUpgradeOutlivesAnotherUpgradesFailure(t *testing.T) {
	e, id := upgradeEnv(t, "pm_card_ok")
	priced := e.subscription(id).Version
	up := e.upgradeTo(id, "business_monthly")
	e.command(id, domain.RecordUpgradeFailed{UpgradeID: uuid.NewString(), Reason: domain.UpgradeReasonDeclined})
	u, err := e.svc.AdvanceUpgrade(context.Background(), up)
	if err != nil || u.Status != domain.UpgradeCompletedStatus || u.AppliedVersion != priced+2 {
		t.Fatalf("upgrade %s applied at v%d (priced at v%d), %v; want completed at v%d", u.Status, u.AppliedVersion, priced, err, priced+2)
	}
	e.checkUpgradeInvariants(t, id, up, true)

	// A change that does move the price still aborts it, before any charge.
	up = e.command(id, domain.ChangeSeats{Seats: 4})
	if up == uuid.Nil {
		t.Fatal("a seat increase started no upgrade")
	}
	e.command(id, domain.ChangeSeats{Seats: 1})
	if u, err := e.svc.AdvanceUpgrade(context.Background(), up); err != nil || u.Status != domain.UpgradeAbortedStatus ||
		u.Reason != domain.UpgradeReasonConflict || u.Charged != 0 {
		t.Fatalf("upgrade after a seat change: %+v, %v; want aborted for the conflict, uncharged", u, err)
	}
}

// checkUpgradeInvariants: the upgrade is charged (net of refunds) if and only if the subscription
// was upgraded, and never more than once; when done, the invoice agrees.
func (e *env) checkUpgradeInvariants(t *testing.T, id, up uuid.UUID, done bool) {
	t.Helper()
	invoices := e.invoices(id)
	sub := e.subscription(id)
	upgraded := sub.Plan.PlanID == "business_monthly"
	charges, err := e.gw.Charges(context.Background(), "cus_up")
	if err != nil {
		t.Fatal(err)
	}
	var upgradeCharges int
	var net int64
	for _, c := range charges {
		if c.IdempotencyKey == "upgrade:"+up.String() {
			upgradeCharges++
			net = c.Amount - c.AmountRefunded
		}
	}
	if upgradeCharges > 1 {
		t.Errorf("%d charges for one upgrade", upgradeCharges)
	}
	if done && upgraded != (net > 0) {
		t.Errorf("upgraded %v but net charge %d", upgraded, net)
	}
	if !done && upgraded && net == 0 {
		t.Errorf("upgraded without being charged")
	}
	if done {
		inv := invoices[len(invoices)-1]
		wantStatus := domain.InvoiceVoid
		if upgraded {
			wantStatus = domain.InvoicePaid
		}
		if inv.UpgradeID != up.String() || inv.Status != wantStatus || inv.AmountPaid-inv.AmountRefunded != net {
			t.Errorf("upgrade invoice %s paid %d refunded %d; want %s, net %d", inv.Status, inv.AmountPaid, inv.AmountRefunded, wantStatus, net)
		}
		if n := countOf(e.eventTypes(up), "upgrade.charged"); n != 1 {
			t.Errorf("upgrade.charged recorded %d times", n)
		}
	}
}

// crashOnce makes s fail at point the next time it gets there.
func crashOnce(s *Service, point string) {
	fired := false
	s.fault = func(p string) error {
		if p == point && !fired {
			fired = true
			return fmt.Errorf("%s: %w", p, errCrash)
		}
		return nil
	}
}

func TestUpgradeWaitsForEntitlements(t *testing.T) {
	e, id := upgradeEnv(t, "pm_card_ok")
	visible := false
	// While the features are not visible, the drive gives up (as a request's deadline would) the
	// moment it asks: no timing involved.
	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	e.svc.visible = func(context.Context, uuid.UUID, int64) (bool, error) {
		if !visible {
			giveUp()
		}
		return visible, nil
	}
	up := e.upgradeTo(id, "business_monthly")
	u, err := e.svc.AdvanceUpgrade(ctx, up)
	if err != nil || u.Status != domain.UpgradePlanAppliedStatus {
		t.Fatalf("with entitlements not visible: %s, %v; want plan_applied", u.Status, err)
	}
	visible = true
	if u, err = e.svc.AdvanceUpgrade(context.Background(), up); err != nil || u.Status != domain.UpgradeCompletedStatus {
		t.Fatalf("once visible: %s, %v", u.Status, err)
	}
}
