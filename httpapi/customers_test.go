package httpapi_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
)

type entitlements struct {
	CustomerID    string   `json:"customer_id"`
	Features      []string `json:"features"`
	Subscriptions []struct {
		SubscriptionID string   `json:"subscription_id"`
		PlanID         string   `json:"plan_id"`
		Status         string   `json:"status"`
		Features       []string `json:"features"`
	} `json:"subscriptions"`
}

type balance struct {
	CustomerID string `json:"customer_id"`
	Balances   []struct {
		Currency string `json:"currency"`
		Amount   int64  `json:"amount"`
	} `json:"balances"`
	InvoicesIssued int64 `json:"invoices_issued"`
}

// TestEntitlementsRoute: a customer's features are the union of their active and trialing
// subscriptions' plans, and follow cancellations and plan changes once projected.
func TestEntitlementsRoute(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	create := func(customer, plan string, trialDays int) subscription {
		t.Helper()
		var s subscription
		api.must(http.StatusCreated, "POST", "/v1/subscriptions",
			map[string]any{"customer_id": customer, "plan_id": plan, "seats": 1, "trial_days": trialDays,
				"payment_method": "pm_card_ok"}).decode(t, &s)
		return s
	}
	starter := create("cus.ent:1", "starter_monthly", 0)
	trial := create("cus.ent:1", "pro_monthly", 14)
	create("cus_other", "business_monthly", 0)
	projectAll(t, api.db, testenv.WholeLog(t, api.db))

	var got entitlements
	api.getJSON("/v1/customers/cus.ent:1/entitlements", &got)
	pro := []string{"api_access", "audit_log", "email_support", "priority_support"}
	if got.CustomerID != "cus.ent:1" || !reflect.DeepEqual(got.Features, pro) || len(got.Subscriptions) != 2 ||
		got.Subscriptions[0].SubscriptionID != starter.ID || got.Subscriptions[0].Status != "active" ||
		got.Subscriptions[0].PlanID != "starter_monthly" || !reflect.DeepEqual(got.Subscriptions[0].Features, []string{"api_access", "email_support"}) ||
		got.Subscriptions[1].SubscriptionID != trial.ID || got.Subscriptions[1].Status != "trialing" ||
		!reflect.DeepEqual(got.Subscriptions[1].Features, trial.Features) {
		t.Errorf("entitlements = %s", show(got))
	}

	// Cancel the trial and upgrade the starter: not visible until projected, then exactly so.
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+trial.ID+"/cancel", map[string]any{})
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+starter.ID+"/change-plan",
		map[string]any{"plan_id": "business_monthly", "timing": "immediate"})
	var before entitlements
	api.getJSON("/v1/customers/cus.ent:1/entitlements", &before)
	if !reflect.DeepEqual(before, got) {
		t.Errorf("entitlements changed before the projector ran: %s", show(before))
	}
	projectAll(t, api.db, testenv.WholeLog(t, api.db))
	api.getJSON("/v1/customers/cus.ent:1/entitlements", &got)
	business := []string{"api_access", "audit_log", "email_support", "priority_support", "sso"}
	if !reflect.DeepEqual(got.Features, business) || len(got.Subscriptions) != 1 ||
		got.Subscriptions[0].PlanID != "business_monthly" || got.Subscriptions[0].SubscriptionID != starter.ID {
		t.Errorf("after cancel and upgrade = %s", show(got))
	}

	// A customer the service has never seen has nothing, and it is not an error.
	api.getJSON("/v1/customers/cus_nobody/entitlements", &got)
	if got.CustomerID != "cus_nobody" || got.Features == nil || len(got.Features) != 0 || got.Subscriptions == nil ||
		len(got.Subscriptions) != 0 {
		t.Errorf("unknown customer = %s", show(got))
	}
	checkCustomerRefusals(t, api, "entitlements")
}

// TestBalanceRoute: a customer's credit per currency and invoice count, folded from the
// customer's stream: a credit invoice adds to the balance, the next invoice uses it, a void
// gives it back; each answer is current without any projector.
func TestBalanceRoute(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	var got balance
	api.getJSON("/v1/customers/cus_bal/balance", &got)
	if got.CustomerID != "cus_bal" || got.Balances == nil || len(got.Balances) != 0 || got.InvoicesIssued != 0 {
		t.Errorf("new customer's balance = %s", show(got))
	}

	var s subscription
	// On a trial, so that the only invoices are the ones this test issues.
	api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_bal", "plan_id": "pro_monthly", "seats": 1, "trial_days": 14}).decode(t, &s)
	issue := func(currency string, amount int64, at time.Time) uuid.UUID {
		t.Helper()
		return testenv.IssueInvoice(t, api.db, domain.InvoiceRequest{SubscriptionID: s.ID, CustomerID: "cus_bal",
			Currency: currency, Reason: domain.InvoiceForUpdate, PeriodStart: at, PeriodEnd: s.CurrentPeriodEnd,
			Lines: []domain.InvoiceLine{{Description: "change", Amount: amount, Quantity: 1, UnitAmount: 4900,
				PeriodStart: at, PeriodEnd: s.CurrentPeriodEnd, Proration: true, PlanID: "pro_monthly"}}}, at)
	}
	check := func(step string, want map[string]int64, invoices int64) {
		t.Helper()
		api.getJSON("/v1/customers/cus_bal/balance", &got)
		c, err := eventstore.LoadCustomer(context.Background(), api.db, "cus_bal")
		if err != nil {
			t.Fatal(err)
		}
		gotMap := map[string]int64{}
		var currencies []string
		for _, b := range got.Balances {
			gotMap[b.Currency] = b.Amount
			currencies = append(currencies, b.Currency)
		}
		sorted := strings.Join(currencies, ",") == map[int]string{0: "", 1: "USD", 2: "EUR,USD"}[len(currencies)]
		if !reflect.DeepEqual(gotMap, want) || !reflect.DeepEqual(gotMap, c.Credit) || !sorted ||
			got.InvoicesIssued != invoices || c.Invoices != invoices {
			t.Errorf("%s: balance = %s, want %v and %d invoices (the customer folds to %v, %d)", step, show(got), want,
				invoices, c.Credit, c.Invoices)
		}
	}
	now := testStart
	issue("USD", -3000, now)
	check("after a credit invoice", map[string]int64{"USD": 3000}, 1)
	used := issue("USD", 1000, now.Add(time.Hour))
	check("after an invoice using part of it", map[string]int64{"USD": 2000}, 2)
	issue("EUR", 500, now.Add(2*time.Hour))
	check("after an invoice in another currency", map[string]int64{"USD": 2000, "EUR": 0}, 3)
	testenv.VoidInvoice(t, api.db, used, "test", now.Add(3*time.Hour))
	check("after voiding the invoice that used credit", map[string]int64{"USD": 3000, "EUR": 0}, 3)
	checkCustomerRefusals(t, api, "balance")
}

// checkCustomerRefusals: the customer id is held to the pattern subscriptions take, and the
// routes take no query parameters; both need only the read scope.
func checkCustomerRefusals(t *testing.T, api *testAPI, route string) {
	t.Helper()
	tests := []struct {
		id, query, typ string
		status         int
	}{
		{"-starts-with-dash", "", "/problems/invalid-fields", 422},
		{strings.Repeat("c", 129), "", "/problems/invalid-fields", 422},
		{"has%20space", "", "/problems/invalid-fields", 422},
		{"cus_1", "?currency=USD", "/problems/invalid-parameter", 400},
	}
	for _, tt := range tests {
		path := "/v1/customers/" + tt.id + "/" + route + tt.query
		r := api.do("GET", path, nil, withKey(api.keys[httpapi.ScopeRead]))
		if r.status != tt.status {
			t.Errorf("GET %s: status %d, want %d: %s", path, r.status, tt.status, r.body)
			continue
		}
		p := r.problem(t)
		pointer := "customer_id"
		if tt.status == 400 {
			pointer = "currency"
		}
		if p.Type != tt.typ || len(p.Errors) != 1 || p.Errors[0].Pointer != pointer {
			t.Errorf("GET %s: problem %+v, want %s naming %s", path, p, tt.typ, pointer)
		}
	}
	if r := api.do("GET", "/v1/customers/cus_1/"+route, nil, withKey("bk_nonsense")); r.status != http.StatusUnauthorized {
		t.Errorf("unknown key: %d", r.status)
	}
	long := strings.Repeat("c", 128) // the longest id accepted
	if r := api.do("GET", "/v1/customers/"+long+"/"+route, nil, withKey(api.keys[httpapi.ScopeRead])); r.status != http.StatusOK {
		t.Errorf("GET %s of a 128-character id: %d", route, r.status)
	}
}
