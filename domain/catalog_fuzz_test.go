package domain_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
)

// FuzzParseCatalog feeds arbitrary bytes to ParseCatalog (CATALOG_FILE is read with it).
// Properties: it never panics; a refusal wraps ErrInvalidCatalog and returns no catalog; an
// accepted catalog has a version ≥ 1 and at least one plan with unique ids, looks every plan up
// by its id, hands out copies, survives a JSON round trip, and every plan in it can start a
// subscription at any seat count (the rules Decide applies to a plan are those ParseCatalog
// checked) without its amounts overflowing.
func FuzzParseCatalog(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzParseCatalog", parseCatalogSeeds(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := domain.ParseCatalog(data)
		if err != nil {
			if c != nil || !errors.Is(err, domain.ErrInvalidCatalog) {
				t.Fatalf("ParseCatalog(%q) = %v, %v; a refusal wraps ErrInvalidCatalog and returns no catalog", data, c, err)
			}
			return
		}
		plans := c.Plans()
		if c.Version() < 1 || len(plans) == 0 {
			t.Fatalf("ParseCatalog(%q) accepted version %d with %d plans", data, c.Version(), len(plans))
		}
		seen := map[string]bool{}
		for i, p := range plans {
			if seen[p.ID] {
				t.Errorf("plan id %q appears twice", p.ID)
			}
			seen[p.ID] = true
			got, err := c.Plan(p.ID)
			if err != nil || !reflect.DeepEqual(got, p) {
				t.Errorf("Plan(%q) = %+v, %v; want plan %d, %+v", p.ID, got, err, i, p)
			}
			checkPlanIsUsable(t, p)
			if len(p.Features) > 0 {
				p.Features[0] = "mutated by a caller"
				if again, _ := c.Plan(p.ID); again.Features[0] == "mutated by a caller" {
					t.Errorf("Plan(%q) shares its features with the catalog", p.ID)
				}
			}
		}
		var unknown *domain.UnknownPlanError
		if _, err := c.Plan("no such plan"); !errors.As(err, &unknown) {
			t.Errorf(`Plan("no such plan") = %v, want *UnknownPlanError`, err)
		}

		encoded, err := json.Marshal(map[string]any{"version": c.Version(), "plans": c.Plans()})
		if err != nil {
			t.Fatal(err)
		}
		again, err := domain.ParseCatalog(encoded)
		if err != nil {
			t.Fatalf("the catalog parsed from %q re-encodes as %s, which ParseCatalog refuses: %v", data, encoded, err)
		}
		if again.Version() != c.Version() || !reflect.DeepEqual(again.Plans(), c.Plans()) {
			t.Errorf("catalog changed in a JSON round trip: %+v, then %+v", c.Plans(), again.Plans())
		}
	})
}

// checkPlanIsUsable: a catalog plan can start a subscription with one seat and with the most
// seats, with no trial and with its default trial, and prices the most seats without overflow.
func checkPlanIsUsable(t *testing.T, p domain.Plan) {
	t.Helper()
	noTrial := 0
	for _, seats := range []int64{1, domain.MaxSeats} {
		for _, trial := range []*int{nil, &noTrial} {
			c := domain.Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: p, Seats: seats, TrialDays: trial}
			events, err := domain.Decide(domain.Subscription{}, c, decideBases[0])
			if err != nil || len(events) != 1 {
				t.Errorf("catalog plan %+v cannot start a subscription of %d seats: %v", p, seats, err)
			}
		}
	}
	if m := p.MonthlyAmount(domain.MaxSeats); m < 0 {
		t.Errorf("plan %s: monthly amount of %d seats is %d", p.ID, domain.MaxSeats, m)
	}
}

func parseCatalogSeeds(tb testing.TB) []fuzzcorpus.Seed {
	tb.Helper()
	builtIn, err := os.ReadFile("catalog.json")
	if err != nil {
		tb.Fatal(err)
	}
	plan := func(fields string) string {
		return `{"version": 1, "plans": [{"id": "pro", "name": "Pro", "interval": "month", "unit_amount": 4900, "currency": "USD", "features": ["sso"], "trial_days": 14` + fields + `}]}`
	}
	replace := func(old, new string) string { return strings.Replace(plan(""), old, new, 1) }
	seeds := []fuzzcorpus.Seed{fuzzcorpus.S("built-in", builtIn)}
	for name, data := range map[string]string{
		"minimal":                 plan(""),
		"empty":                   ``,
		"null":                    `null`,
		"array":                   `[]`,
		"empty-object":            `{}`,
		"version-zero":            replace(`"version": 1`, `"version": 0`),
		"version-negative":        replace(`"version": 1`, `"version": -1`),
		"version-1e400":           replace(`"version": 1`, `"version": 1e400`),
		"version-fraction":        replace(`"version": 1`, `"version": 1.5`),
		"version-string":          replace(`"version": 1`, `"version": "1"`),
		"no-plans":                `{"version": 1, "plans": []}`,
		"plans-null":              `{"version": 1, "plans": null}`,
		"plan-null":               `{"version": 1, "plans": [null]}`,
		"duplicate-ids":           strings.Replace(plan(""), `}]}`, `}, {"id": "pro", "name": "Again", "interval": "year", "unit_amount": 1, "currency": "USD", "features": [], "trial_days": 0}]}`, 1),
		"bad-id":                  replace(`"id": "pro"`, `"id": "Pro Plan"`),
		"id-too-long":             replace(`"id": "pro"`, `"id": "`+strings.Repeat("p", 65)+`"`),
		"empty-name":              replace(`"name": "Pro"`, `"name": ""`),
		"weekly":                  replace(`"month"`, `"week"`),
		"interval-case":           replace(`"month"`, `"Month"`),
		"amount-max":              replace(`4900`, `100000000000`),
		"amount-over-max":         replace(`4900`, `100000000001`),
		"amount-negative":         replace(`4900`, `-1`),
		"amount-above-int64":      replace(`4900`, `9223372036854775808`),
		"currency-lower":          replace(`"USD"`, `"usd"`),
		"currency-long":           replace(`"USD"`, `"USDX"`),
		"trial-over-max":          replace(`14`, `731`),
		"trial-negative":          replace(`14`, `-1`),
		"feature-empty":           replace(`["sso"]`, `["sso", ""]`),
		"features-null":           replace(`["sso"]`, `null`),
		"features-nested":         replace(`["sso"]`, `[["sso"]]`),
		"unknown-field":           plan(`, "discount": 10`),
		"top-level-unknown-field": strings.Replace(plan(""), `{"version": 1`, `{"version": 1, "currency": "USD"`, 1),
		"field-in-other-case":     replace(`"unit_amount"`, `"UNIT_AMOUNT"`),
		"duplicate-key":           replace(`"unit_amount": 4900`, `"unit_amount": 4900, "unit_amount": -5`),
		"trailing-data":           plan("") + ` {}`,
		"truncated":               plan("")[:40],
		"nul-in-name":             replace(`"Pro"`, `"Pro\u0000"`),
		"invalid-utf8-name":       replace(`"Pro"`, "\"Pro\xff\""),
		"deep-nesting":            `{"version": 1, "plans": ` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}`,
	} {
		seeds = append(seeds, fuzzcorpus.S(name, []byte(data)))
	}
	return seeds
}
