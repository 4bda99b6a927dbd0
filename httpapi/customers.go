package httpapi

import (
	"maps"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// Per-customer reads. Customer ids belong to the caller's system, so an id this service has
// never seen is not an error: it answers with empty lists and zero balances, as it would for
// a customer whose subscriptions all ended.
//
//	GET /v1/customers/{customer_id}/entitlements   from the entitlements read model
//	GET /v1/customers/{customer_id}/balance        folded from the customer's stream (always current)

type entitlementsJSON struct {
	CustomerID    string                         `json:"customer_id"`
	Features      []string                       `json:"features"`
	Subscriptions []subscriptionEntitlementsJSON `json:"subscriptions"`
}

type subscriptionEntitlementsJSON struct {
	SubscriptionID string   `json:"subscription_id"`
	PlanID         string   `json:"plan_id"`
	Status         string   `json:"status"`
	Features       []string `json:"features"`
}

type balanceJSON struct {
	CustomerID     string               `json:"customer_id"`
	Balances       []currencyAmountJSON `json:"balances"`
	InvoicesIssued int64                `json:"invoices_issued"`
}

type currencyAmountJSON struct {
	Currency string `json:"currency"`
	Amount   int64  `json:"amount"`
}

// pathCustomerID reads {customer_id}, held to the pattern POST /v1/subscriptions takes, so that
// any id a subscription can have is accepted and nothing else reaches a query. A value that
// does not match is well-formed text, hence 422 like the same check on ?customer_id=.
func pathCustomerID(r *http.Request) (string, *Problem) {
	id := chi.URLParam(r, "customer_id")
	if !customerIDPattern.MatchString(id) {
		p := invalidFields([]FieldError{{"customer_id", "must be 1-128 of A-Z a-z 0-9 _ . : - starting with a letter or digit"}})
		p.Detail = "the customer id in the path is invalid; see errors"
		return "", p
	}
	return id, nil
}

func (a *API) getEntitlements(w http.ResponseWriter, r *http.Request) {
	customer, p := pathCustomerID(r)
	if p == nil {
		p = noQuery(r)
	}
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	got, err := projections.CustomerEntitlements(r.Context(), a.db, customer)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := entitlementsJSON{CustomerID: customer, Features: got.Features,
		Subscriptions: make([]subscriptionEntitlementsJSON, len(got.Subscriptions))}
	for i, s := range got.Subscriptions {
		out.Subscriptions[i] = subscriptionEntitlementsJSON{SubscriptionID: s.SubscriptionID.String(), PlanID: s.PlanID,
			Status: string(s.Status), Features: append([]string{}, s.Features...)}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getBalance(w http.ResponseWriter, r *http.Request) {
	customer, p := pathCustomerID(r)
	if p == nil {
		p = noQuery(r)
	}
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	c, err := eventstore.LoadCustomer(r.Context(), a.db, customer)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := balanceJSON{CustomerID: customer, Balances: []currencyAmountJSON{}, InvoicesIssued: c.Invoices}
	for _, currency := range slices.Sorted(maps.Keys(c.Credit)) {
		out.Balances = append(out.Balances, currencyAmountJSON{Currency: currency, Amount: c.Credit[currency]})
	}
	writeJSON(w, http.StatusOK, out)
}
