package domain

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"sync"
)

const (
	// MaxSeats and MaxUnitAmount keep amount×seats within int64 (1e17).
	MaxSeats      = 1_000_000
	MaxUnitAmount = 100_000_000_000
	// MaxTrialDays bounds both a plan's default trial and a requested one.
	MaxTrialDays = 730
)

var (
	planIDPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Plan is a catalog entry.
type Plan struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Interval   Interval `json:"interval"`
	UnitAmount int64    `json:"unit_amount"` // per seat per interval, minor units
	Currency   string   `json:"currency"`    // ISO 4217, upper case
	Features   []string `json:"features"`
	TrialDays  int      `json:"trial_days"` // default trial length
}

// PlanTerms are the priced terms of a plan as they applied at the time. Events
// carry them instead of a plan id so that history replays identically after
// the catalog changes.
type PlanTerms struct {
	PlanID     string   `json:"plan_id"`
	Name       string   `json:"name"`
	Interval   Interval `json:"interval"`
	UnitAmount int64    `json:"unit_amount"`
	Currency   string   `json:"currency"`
	Features   []string `json:"features"`
}

// Terms returns the plan's priced terms.
func (p Plan) Terms() PlanTerms {
	return PlanTerms{
		PlanID:     p.ID,
		Name:       p.Name,
		Interval:   p.Interval,
		UnitAmount: p.UnitAmount,
		Currency:   p.Currency,
		Features:   slices.Clone(p.Features),
	}
}

// MonthlyAmount is the plan's price for seats normalised to one month
// (yearly ÷ 12, rounded half to even), in minor units.
func (p Plan) MonthlyAmount(seats int64) int64 {
	return monthlyAmount(p.UnitAmount, p.Interval, seats)
}

// MonthlyAmount is the terms' price for seats normalised to one month
// (yearly ÷ 12, rounded half to even), in minor units.
func (t PlanTerms) MonthlyAmount(seats int64) int64 {
	return monthlyAmount(t.UnitAmount, t.Interval, seats)
}

func monthlyAmount(unitAmount int64, iv Interval, seats int64) int64 {
	return mulDivHalfEven(unitAmount, seats, 1, int64(iv.months()))
}

// validate is shared by ParseCatalog and Decide, so a plan handed to a
// command directly is held to the same rules as one from the catalog.
func (p Plan) validate() error {
	reason := ""
	switch {
	case !planIDPattern.MatchString(p.ID):
		reason = "id must match " + planIDPattern.String()
	case p.Name == "":
		reason = "name is empty"
	case !p.Interval.Valid():
		reason = fmt.Sprintf("interval %q is not month or year", p.Interval)
	case p.UnitAmount < 0 || p.UnitAmount > MaxUnitAmount:
		reason = fmt.Sprintf("unit_amount %d is outside 0..%d", p.UnitAmount, MaxUnitAmount)
	case !currencyPattern.MatchString(p.Currency):
		reason = fmt.Sprintf("currency %q is not 3 upper-case letters", p.Currency)
	case ValidateTrialDays(p.TrialDays) != nil:
		reason = fmt.Sprintf("trial_days %d is outside 0..%d", p.TrialDays, MaxTrialDays)
	case slices.Contains(p.Features, ""):
		reason = "features contain an empty name"
	default:
		return nil
	}
	return &InvalidPlanError{PlanID: p.ID, Reason: reason}
}

// Catalog is an immutable, versioned list of plans.
type Catalog struct {
	version int
	plans   []Plan
	byID    map[string]int
}

// ParseCatalog parses and validates a JSON catalog of the form
// {"version": 1, "plans": [...]}. Every error it returns wraps
// ErrInvalidCatalog; errors about one plan also wrap *InvalidPlanError.
func ParseCatalog(data []byte) (*Catalog, error) {
	var doc struct {
		Version int    `json:"version"`
		Plans   []Plan `json:"plans"`
	}
	if err := decodeStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCatalog, err)
	}
	if doc.Version < 1 {
		return nil, fmt.Errorf("%w: version %d is below 1", ErrInvalidCatalog, doc.Version)
	}
	if len(doc.Plans) == 0 {
		return nil, fmt.Errorf("%w: no plans", ErrInvalidCatalog)
	}
	c := &Catalog{version: doc.Version, plans: doc.Plans, byID: make(map[string]int, len(doc.Plans))}
	for i, p := range doc.Plans {
		err := p.validate()
		if _, dup := c.byID[p.ID]; dup {
			err = &InvalidPlanError{PlanID: p.ID, Reason: "duplicate id"}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: plan %d: %w", ErrInvalidCatalog, i, err)
		}
		c.byID[p.ID] = i
	}
	return c, nil
}

//go:embed catalog.json
var defaultCatalogJSON []byte

var defaultCatalog = sync.OnceValue(func() *Catalog {
	c, err := ParseCatalog(defaultCatalogJSON)
	if err != nil {
		panic(err) // the embedded file is part of the build; a test parses it
	}
	return c
})

// DefaultCatalog returns the catalog embedded from catalog.json.
func DefaultCatalog() *Catalog { return defaultCatalog() }

// Version is the catalog's version number.
func (c *Catalog) Version() int { return c.version }

// Plans returns a copy of the plans in file order.
func (c *Catalog) Plans() []Plan {
	out := make([]Plan, len(c.plans))
	for i, p := range c.plans {
		out[i] = clonePlan(p)
	}
	return out
}

// Plan returns the plan with the given id, or *UnknownPlanError.
func (c *Catalog) Plan(id string) (Plan, error) {
	i, ok := c.byID[id]
	if !ok {
		return Plan{}, &UnknownPlanError{PlanID: id}
	}
	return clonePlan(c.plans[i]), nil
}

// clonePlan copies the features so callers cannot mutate the shared catalog.
func clonePlan(p Plan) Plan {
	p.Features = slices.Clone(p.Features)
	return p
}
