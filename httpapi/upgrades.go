package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/billing"
)

// upgradeWait is how long a paid change's request drives its saga before answering 202 and
// leaving the rest to the billing scheduler.
const upgradeWait = 10 * time.Second

// upgradeStartedJSON is what a paid change's idempotency record keeps: the saga it started. A
// replay of the request answers with that saga's outcome, never a second saga.
type upgradeStartedJSON struct {
	UpgradeID string `json:"upgrade_id"`
}

// upgradeJSON is the API's representation of an upgrade saga.
type upgradeJSON struct {
	ID             string               `json:"id"`
	SubscriptionID string               `json:"subscription_id"`
	Status         domain.UpgradeStatus `json:"status"`
	PlanID         string               `json:"plan_id"`
	Seats          int64                `json:"seats"`
	Amount         int64                `json:"amount"`
	Currency       string               `json:"currency"`
	InvoiceID      *string              `json:"invoice_id"`
	ChargeID       *string              `json:"charge_id"`
	RefundID       *string              `json:"refund_id"`
	Reason         *string              `json:"reason"`
	DeclineCode    *string              `json:"decline_code"`
	StartedAt      time.Time            `json:"started_at"`
	UpdatedAt      time.Time            `json:"updated_at"`
}

func toUpgradeJSON(u domain.Upgrade) upgradeJSON {
	// Every proration line of a change names a plan; the last one is the plan charged for.
	lines := u.Change()
	_, seats := u.Target(domain.PlanTerms{})
	planID := ""
	switch c := lines.(type) {
	case domain.PlanChanged:
		planID = c.Plan.PlanID
	case domain.SeatsChanged:
		planID = c.Proration[len(c.Proration)-1].PlanID
	}
	return upgradeJSON{
		ID: u.UpgradeID, SubscriptionID: u.SubscriptionID, Status: u.Status, PlanID: planID, Seats: seats,
		Amount: u.Amount, Currency: u.Currency, InvoiceID: optionalString(u.InvoiceID),
		ChargeID: optionalString(u.ChargeID), RefundID: optionalString(u.RefundID), Reason: optionalString(u.Reason),
		DeclineCode: optionalString(u.DeclineCode), StartedAt: u.StartedAt, UpdatedAt: u.UpdatedAt,
	}
}

// driveUpgrade answers a paid change: it drives the saga the request started (or, on a replay,
// started before) for up to upgradeWait and answers with where it got: 200 with the changed
// subscription, 402 when the payment was declined, 409 when the subscription changed under it,
// or 202 with the saga while it is still running.
func (a *API) driveUpgrade(w http.ResponseWriter, r *http.Request, subID uuid.UUID, stored []byte, replayed bool) {
	var started upgradeStartedJSON
	if err := json.Unmarshal(stored, &started); err != nil {
		a.fail(w, r, err)
		return
	}
	id, err := uuid.Parse(started.UpgradeID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var u domain.Upgrade
	if a.billing != nil {
		ctx, cancel := context.WithTimeout(r.Context(), upgradeWait)
		u, err = a.billing.AdvanceUpgrade(ctx, id)
		cancel()
		if err != nil {
			// The saga stays due; the scheduler resumes it. The client sees where it is.
			a.log.WarnContext(r.Context(), "upgrade step failed; it will be resumed", "upgrade_id", id, "error", err)
		}
	}
	if !u.Exists() {
		if u, err = billing.LoadUpgrade(r.Context(), a.db, id); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	switch {
	case u.Status == domain.UpgradeCompletedStatus:
		// The subscription as the change left it, not as later commands made it: a replay must
		// answer what the first request did, as every other command's replay does.
		sub, _, err := eventstore.LoadSubscription(r.Context(), a.db, subID, eventstore.LoadOptions{UpToVersion: u.AppliedVersion})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		result := toChangeResult(sub, []domain.Event{u.Change()}).(changeResultJSON)
		uj := toUpgradeJSON(u)
		result.Upgrade = &uj
		if !replayed {
			a.metrics.eventAppended(u.Change().EventType())
		}
		writeJSON(w, http.StatusOK, result)
	case u.Status == domain.UpgradeAbortedStatus:
		p := problem(http.StatusConflict, "concurrent-modification", "Concurrent modification",
			"the subscription changed while the upgrade was being paid for; the charge was refunded and the invoice voided")
		if u.Reason == domain.UpgradeReasonDeclined {
			p = problem(http.StatusPaymentRequired, "payment-declined", "Payment declined",
				"the payment method was declined ("+u.DeclineCode+"); the subscription is unchanged and the invoice void")
			p.DeclineCode = u.DeclineCode
		}
		p.UpgradeID = u.UpgradeID
		writeProblem(w, r, p)
	default:
		w.Header().Set("Location", "/v1/subscriptions/"+subID.String()+"/upgrades/"+u.UpgradeID)
		writeJSON(w, http.StatusAccepted, toUpgradeJSON(u))
	}
}

func (a *API) getUpgrade(w http.ResponseWriter, r *http.Request) {
	subID, p := pathUUID(r, "id")
	if p == nil {
		var id uuid.UUID
		if id, p = pathUUID(r, "upgrade_id"); p == nil {
			u, err := billing.LoadUpgrade(r.Context(), a.db, id)
			if err == nil && u.SubscriptionID != subID.String() {
				err = domain.ErrUpgradeNotFound
			}
			if err != nil {
				a.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, toUpgradeJSON(u))
			return
		}
	}
	writeProblem(w, r, p)
}
