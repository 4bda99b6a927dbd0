package domain

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestDefaultCatalog(t *testing.T) {
	c, err := ParseCatalog(defaultCatalogJSON)
	if err != nil {
		t.Fatalf("embedded catalog.json: %v", err)
	}
	if got := DefaultCatalog().Version(); got != c.Version() || got != 1 {
		t.Errorf("Version() = %d, want 1", got)
	}
	var ids []string
	for _, p := range DefaultCatalog().Plans() {
		ids = append(ids, p.ID)
	}
	want := []string{"starter_monthly", "pro_monthly", "business_monthly", "starter_yearly", "pro_yearly", "business_yearly", "pro_monthly_eur"}
	if !slices.Equal(ids, want) {
		t.Errorf("plan ids = %v, want %v (file order)", ids, want)
	}
	p, err := DefaultCatalog().Plan("pro_monthly_eur")
	if err != nil || p.Currency != "EUR" || p.UnitAmount != 4500 || p.TrialDays != 14 {
		t.Errorf("Plan(pro_monthly_eur) = %+v, %v, want 4500 EUR with a 14-day trial", p, err)
	}
}

func TestCatalogReturnsCopies(t *testing.T) {
	c := DefaultCatalog()
	c.Plans()[0].Features[0] = "mutated"
	p, _ := c.Plan("starter_monthly")
	p.Features[0] = "mutated"
	p.Terms().Features[0] = "mutated"
	if got, _ := c.Plan("starter_monthly"); got.Features[0] == "mutated" {
		t.Errorf("catalog features changed through a returned plan: %v", got.Features)
	}
}

func TestCatalogUnknownPlan(t *testing.T) {
	_, err := DefaultCatalog().Plan("enterprise")
	var e *UnknownPlanError
	if !errors.As(err, &e) || e.PlanID != "enterprise" {
		t.Errorf("Plan(enterprise) error = %v, want *UnknownPlanError{enterprise}", err)
	}
}

// planJSON is a valid plan with field set to value (or added, if unknown).
func planJSON(field string, value any) string {
	p := map[string]any{
		"id": "p", "name": "P", "interval": "month", "unit_amount": 100,
		"currency": "USD", "features": []string{"sso"}, "trial_days": 0,
	}
	if field != "" {
		p[field] = value
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func catalogJSON(plans ...string) string {
	return `{"version": 1, "plans": [` + strings.Join(plans, ",") + `]}`
}

func TestParseCatalogAccepts(t *testing.T) {
	for _, plan := range []string{
		planJSON("", nil),
		planJSON("id", strings.Repeat("a", 64)),
		planJSON("id", "0-a_b"),
		planJSON("unit_amount", 0),
		planJSON("unit_amount", MaxUnitAmount),
		planJSON("interval", "year"),
		planJSON("trial_days", MaxTrialDays),
		planJSON("features", []string{}),
		planJSON("features", nil),
	} {
		doc := `{"version": 3, "plans": [` + plan + `]}`
		if c, err := ParseCatalog([]byte(doc)); err != nil || c.Version() != 3 {
			t.Errorf("ParseCatalog(%s) = %v, want a version 3 catalog", doc, err)
		}
	}
}

func TestParseCatalogRejects(t *testing.T) {
	valid := planJSON("", nil)
	tests := []struct {
		name    string
		doc     string
		badPlan bool // the error is about one plan, with id planID
		planID  string
	}{
		{name: "not json", doc: `{"version": 1,`},
		{name: "trailing data", doc: catalogJSON(valid) + `{}`},
		{name: "unknown top-level field", doc: `{"version": 1, "currency": "USD", "plans": [` + valid + `]}`},
		{name: "unknown plan field", doc: catalogJSON(planJSON("tier", "gold"))},
		{name: "wrong type", doc: catalogJSON(planJSON("unit_amount", "100"))},
		{name: "missing version", doc: `{"plans": [` + valid + `]}`},
		{name: "version 0", doc: `{"version": 0, "plans": [` + valid + `]}`},
		{name: "no plans", doc: `{"version": 1, "plans": []}`},
		{name: "missing plans", doc: `{"version": 1}`},
		{"empty id", catalogJSON(planJSON("id", "")), true, ""},
		{"upper-case id", catalogJSON(planJSON("id", "Pro")), true, "Pro"},
		{"id starting with a dash", catalogJSON(planJSON("id", "-pro")), true, "-pro"},
		{"id with a space", catalogJSON(planJSON("id", "pro plan")), true, "pro plan"},
		{"id of 65 characters", catalogJSON(planJSON("id", strings.Repeat("a", 65))), true, strings.Repeat("a", 65)},
		{"duplicate id", catalogJSON(valid, planJSON("name", "Other")), true, "p"},
		{"empty name", catalogJSON(planJSON("name", "")), true, "p"},
		{"unknown interval", catalogJSON(planJSON("interval", "week")), true, "p"},
		{"empty interval", catalogJSON(planJSON("interval", "")), true, "p"},
		{"negative unit amount", catalogJSON(planJSON("unit_amount", -1)), true, "p"},
		{"unit amount above max", catalogJSON(planJSON("unit_amount", MaxUnitAmount+1)), true, "p"},
		{"lower-case currency", catalogJSON(planJSON("currency", "usd")), true, "p"},
		{"4-letter currency", catalogJSON(planJSON("currency", "USDT")), true, "p"},
		{"empty currency", catalogJSON(planJSON("currency", "")), true, "p"},
		{"negative trial", catalogJSON(planJSON("trial_days", -1)), true, "p"},
		{"trial above 730 days", catalogJSON(planJSON("trial_days", MaxTrialDays+1)), true, "p"},
		{"empty feature", catalogJSON(planJSON("features", []string{"sso", ""})), true, "p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCatalog([]byte(tt.doc))
			if !errors.Is(err, ErrInvalidCatalog) {
				t.Fatalf("ParseCatalog(%s) = %v, %v, want ErrInvalidCatalog", tt.doc, c, err)
			}
			var pe *InvalidPlanError
			if got := errors.As(err, &pe); got != tt.badPlan {
				t.Fatalf("ParseCatalog(%s) error %q: got *InvalidPlanError %t, want %t", tt.doc, err, got, tt.badPlan)
			}
			if tt.badPlan && pe.PlanID != tt.planID {
				t.Errorf("InvalidPlanError.PlanID = %q, want %q", pe.PlanID, tt.planID)
			}
			if msg := err.Error(); msg != strings.ToLower(msg[:1])+msg[1:] {
				t.Errorf("error %q does not start lower case", msg)
			}
		})
	}
}

func TestMonthlyAmount(t *testing.T) {
	tests := []struct {
		iv          Interval
		unit, seats int64
		want        int64
	}{
		{IntervalMonth, 4900, 1, 4900},
		{IntervalMonth, 4900, 3, 14700},
		{IntervalMonth, 0, 3, 0},
		{IntervalYear, 15000, 1, 1250},
		{IntervalYear, 49000, 1, 4083}, // 4083.33
		{IntervalYear, 99000, 2, 16500},
		{IntervalYear, 1, 1, 0},  // 0.083
		{IntervalYear, 6, 1, 0},  // 0.5 to even
		{IntervalYear, 18, 1, 2}, // 1.5 to even
		{IntervalYear, 30, 1, 2}, // 2.5 to even
		{IntervalYear, 42, 1, 4}, // 3.5 to even
		{IntervalYear, 10, 3, 2}, // 2.5 to even, across seats
		{IntervalYear, 7, 1, 1},  // 0.583
		{IntervalYear, MaxUnitAmount, MaxSeats, 8_333_333_333_333_333},
		{IntervalMonth, MaxUnitAmount, MaxSeats, 100_000_000_000_000_000},
	}
	for _, tt := range tests {
		p := Plan{ID: "p", Interval: tt.iv, UnitAmount: tt.unit}
		if got := p.MonthlyAmount(tt.seats); got != tt.want {
			t.Errorf("Plan{%s, %d}.MonthlyAmount(%d) = %d, want %d", tt.iv, tt.unit, tt.seats, got, tt.want)
		}
		if got := p.Terms().MonthlyAmount(tt.seats); got != tt.want {
			t.Errorf("PlanTerms{%s, %d}.MonthlyAmount(%d) = %d, want %d", tt.iv, tt.unit, tt.seats, got, tt.want)
		}
	}
}
