package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"
)

// What the demo's customers do. Chances are per month (turned into chances per step with
// stepShare) unless said otherwise; they are rough SaaS figures, chosen so that a year shows
// every movement the dashboard charts: new, expansion, contraction, churn and reactivation.

// demoSub is what the walk knows of one subscription: the state in the service's last answer
// about it, and what follows from it by the rules of the API (a trial ends at trial_end, the
// next charge fails on a failing card, a scheduled cancellation happens at the period end). It
// never reads a subscription back: its decisions then depend only on the seed and on the
// answers to its own commands, which the service replays identically, so a resumed run decides
// exactly as the interrupted one did.
type demoSub struct {
	id                string
	customer          string
	plan              planJSON
	seats             int64
	status            string
	card              string    // the payment method; "" for none
	periodEnd         time.Time // the current period's end, as last answered
	nextCharge        time.Time // when the service next charges the card
	cancelAtPeriodEnd bool
	pending           *planJSON // a downgrade scheduled for pendingAt
	pendingAt         time.Time
	fixer             bool // fixes a failing card when the payments fail
	declined          bool // a paid change was declined: the customer knows the card fails
	gone              bool // canceled
}

type demoAction int

const (
	actNone demoAction = iota
	actUpgrade
	actDowngrade
	actSeatsUp
	actSeatsDown
	actPause
	actResume
	actCancelAtPeriodEnd
	actCancelNow
	actUndoCancel
	actCardFails
	actFixCard
)

type demoRate struct {
	action  demoAction
	monthly float64
}

// demoRates are the monthly chances of each action by the status the walk expects.
var demoRates = map[string][]demoRate{
	"active": {{actUpgrade, .04}, {actDowngrade, .03}, {actSeatsUp, .08}, {actSeatsDown, .04}, {actPause, .02},
		{actCancelAtPeriodEnd, .025}, {actCancelNow, .008}, {actCardFails, .015}},
	// Paid up, but the card on file no longer works: the growing teams among them find out when
	// they add seats or upgrade (402), before the next renewal would tell them.
	activeCardFailing: {{actSeatsUp, .3}, {actUpgrade, .1}, {actCancelAtPeriodEnd, .025}},
	"trialing":        {{actUpgrade, .04}, {actSeatsUp, .08}, {actSeatsDown, .02}, {actCancelNow, .10}},
	"paused":          {{actResume, .3}, {actCancelNow, .05}},
}

const activeCardFailing = "active, card failing"

const (
	// Per step, for a customer who fixes cards: one whose payment failed fixes it most often
	// within dunning's retries (a few days); one on a trial without a card, or told by a
	// declined upgrade that theirs fails, sees to it within a few weeks.
	fixPastDueChance = .75
	addCardChance    = .3
	// undoCancelMonthly is the chance that a customer who scheduled a cancellation withdraws it.
	undoCancelMonthly = .15
)

func cardWorks(card string) bool { return strings.HasPrefix(card, "pm_card_ok") }

// expected is the status the subscription has at `at`, as far as the walk can tell.
func (s *demoSub) expected(at time.Time) string {
	if s.gone || (s.cancelAtPeriodEnd && !at.Before(s.periodEnd)) {
		return "canceled"
	}
	switch s.status {
	case "trialing", "active", "past_due":
		if at.Before(s.nextCharge) {
			return s.status
		}
		if cardWorks(s.card) {
			return "active"
		}
		return "past_due"
	}
	return s.status
}

// catchUp applies what the service did at the period end since the last answer.
func (s *demoSub) catchUp(at time.Time) {
	if s.pending != nil && !at.Before(s.pendingAt) {
		s.plan, s.pending = *s.pending, nil
	}
	if s.cancelAtPeriodEnd && !at.Before(s.periodEnd) {
		s.gone = true
	}
}

// choose picks this step's action from u, a uniform draw in [0, 1).
func (s *demoSub) choose(at time.Time, u float64) demoAction {
	status := s.expected(at)
	switch {
	case status == "canceled":
		return actNone
	case !cardWorks(s.card) && (status == "past_due" || s.declined || (status == "trialing" && s.card == "")):
		chance := addCardChance
		if status == "past_due" {
			chance = fixPastDueChance
		}
		if s.fixer && u < chance {
			return actFixCard
		}
		return actNone
	case s.cancelAtPeriodEnd:
		// A customer on the way out changes nothing else, but may change their mind.
		if u < undoCancelMonthly*stepShare {
			return actUndoCancel
		}
		return actNone
	}
	if status == "active" && !cardWorks(s.card) {
		status = activeCardFailing
	}
	var sum float64
	for _, r := range demoRates[status] {
		if sum += r.monthly * stepShare; u < sum {
			return r.action
		}
	}
	return actNone
}

// act lets one subscription do this step's action, if it draws one. Every subscription draws
// the same two numbers every step, acting or not, so one subscription's fate never shifts
// another's draws.
func (w *demoWalk) act(ctx context.Context, s *demoSub, at time.Time) error {
	u, v := w.rng.Float64(), w.rng.Float64()
	s.catchUp(at)
	switch s.choose(at, u) {
	case actUpgrade:
		if to, ok := w.neighbour(s.plan, +1); ok {
			return w.changePlan(ctx, s, "upgrade", to)
		}
		return w.changeSeats(ctx, s, "seats up", s.seats+1+int64(v*5)) // already on the top plan
	case actDowngrade:
		if to, ok := w.neighbour(s.plan, -1); ok {
			return w.changePlan(ctx, s, "downgrade", to)
		}
		if s.seats > 1 {
			return w.changeSeats(ctx, s, "seats down", s.seats-1)
		}
	case actSeatsUp:
		return w.changeSeats(ctx, s, "seats up", s.seats+1+int64(v*5))
	case actSeatsDown:
		if s.seats > 1 {
			return w.changeSeats(ctx, s, "seats down", s.seats-1-int64(v*float64(min(3, s.seats-1))))
		}
	case actPause:
		return w.command(ctx, s, "pause", "/pause", struct{}{})
	case actResume:
		return w.command(ctx, s, "resume", "/resume", struct{}{})
	case actCancelAtPeriodEnd:
		return w.command(ctx, s, "cancel at period end", "/cancel", map[string]bool{"at_period_end": true})
	case actCancelNow:
		return w.command(ctx, s, "cancel now", "/cancel", map[string]bool{"at_period_end": false})
	case actUndoCancel:
		return w.command(ctx, s, "undo cancel", "/undo-cancel", struct{}{})
	case actCardFails:
		// The card expires or runs out: the next renewal fails, and so does an upgrade.
		card := "pm_card_insufficient_funds"
		if v < .5 {
			card = "pm_card_declined"
		}
		return w.command(ctx, s, "card starts failing", "/payment-method", map[string]string{"payment_method": card})
	case actFixCard:
		if err := w.command(ctx, s, "fix card", "/payment-method", map[string]string{"payment_method": "pm_card_ok"}); err != nil {
			return err
		}
		if cardWorks(s.card) {
			s.nextCharge = at // a past-due invoice is retried with it within days
		}
	}
	return nil
}

// command sends a command whose answer is the subscription, and learns from the answer.
func (w *demoWalk) command(ctx context.Context, s *demoSub, kind, suffix string, body any) error {
	var sub subscriptionJSON
	a, err := w.post(ctx, kind, "/v1/subscriptions/"+s.id+suffix, body, &sub)
	if err == nil {
		w.learn(s, a, sub)
	}
	return err
}

func (w *demoWalk) changePlan(ctx context.Context, s *demoSub, kind string, to planJSON) error {
	var change changeJSON
	a, err := w.post(ctx, kind, "/v1/subscriptions/"+s.id+"/change-plan", map[string]string{"plan_id": to.ID}, &change)
	if err == nil {
		w.learn(s, a, change.Subscription)
	}
	return err
}

func (w *demoWalk) changeSeats(ctx context.Context, s *demoSub, kind string, seats int64) error {
	var change changeJSON
	a, err := w.post(ctx, kind, "/v1/subscriptions/"+s.id+"/seats", map[string]int64{"seats": seats}, &change)
	if err == nil {
		w.learn(s, a, change.Subscription)
	}
	return err
}

// learn takes the state from a successful answer; a refusal says little, except that a
// canceled subscription is gone for good. (A paid change still running answers 202 with its
// saga, not the subscription: the walk learns its outcome from a later answer.)
func (w *demoWalk) learn(s *demoSub, a answer, sub subscriptionJSON) {
	switch {
	case a.status == http.StatusOK || a.status == http.StatusCreated:
		w.observe(s, sub)
	case a.problem.Type == "/problems/subscription-canceled":
		s.gone = true
	case a.problem.Type == "/problems/payment-declined":
		s.declined = true
	}
}

func (w *demoWalk) observe(s *demoSub, sub subscriptionJSON) {
	s.id, s.plan, s.seats, s.status = sub.ID, w.plan(sub.PlanID), sub.Seats, sub.Status
	s.card = ""
	if sub.PaymentMethod != nil {
		s.card = *sub.PaymentMethod
	}
	s.periodEnd, s.nextCharge = sub.CurrentPeriodEnd, sub.CurrentPeriodEnd
	s.cancelAtPeriodEnd = sub.CancelAtPeriodEnd
	s.pending = nil
	if sc := sub.ScheduledChange; sc != nil {
		p := w.plan(sc.PlanID)
		s.pending, s.pendingAt = &p, sc.EffectiveAt
	}
	s.gone = sub.Status == "canceled"
	s.declined = s.declined && !cardWorks(s.card)
	w.lastAnswered, w.lastVersion = s, sub.Version
}

// arrive creates the next customer's subscription.
func (w *demoWalk) arrive(ctx context.Context) error {
	w.tally.arrived++
	// Every arrival draws the same numbers whatever they decide (see act).
	var d [7]float64
	for i := range d {
		d[i] = w.rng.Float64()
	}
	plan := w.choosePlan(d[0], d[1], d[2])
	body := map[string]any{
		"customer_id": w.customerID(w.tally.arrived),
		"plan_id":     plan.ID,
		"seats":       1 + int64(25*d[3]*d[3]), // many small teams, a few large ones
	}
	trial := plan.TrialDays > 0 && d[4] < .45
	if !trial {
		body["trial_days"] = 0
	}
	card := chooseCard(trial, d[5])
	if card != "" {
		body["payment_method"] = card
	}
	var sub subscriptionJSON
	a, err := w.post(ctx, "create", "/v1/subscriptions", body, &sub)
	if err != nil || a.status != http.StatusCreated {
		return err
	}
	s := &demoSub{customer: body["customer_id"].(string), fixer: d[6] < .7}
	w.observe(s, sub)
	if sub.Status == "active" {
		s.nextCharge = sub.CreatedAt // the first invoice is charged at once
	}
	w.subs = append(w.subs, s)
	return nil
}

// chooseCard: most customers pay with a card that works; a few with one that is declined (they
// go through dunning, and some fix it); some try a trial before giving a card at all.
func chooseCard(trial bool, d float64) string {
	if trial {
		if d < .2 {
			return ""
		}
		d = (d - .2) / .8
	}
	switch {
	case d < .06:
		return "pm_card_declined"
	case d < .1:
		return "pm_card_insufficient_funds"
	}
	return "pm_card_ok"
}

// choosePlan picks a currency (the catalog's main one for three customers in four), an interval
// (yearly for one in four, where the currency has both) and a tier (cheaper ones more often).
func (w *demoWalk) choosePlan(dc, di, dt float64) planJSON {
	perCurrency := map[string]int{}
	for _, p := range w.plans {
		perCurrency[p.Currency]++
	}
	main := slices.MaxFunc(w.currencies, func(a, b string) int {
		if perCurrency[a] != perCurrency[b] {
			return perCurrency[a] - perCurrency[b]
		}
		return strings.Compare(b, a) // ties go to the alphabetically first
	})
	currency := main
	if others := slices.DeleteFunc(slices.Clone(w.currencies), func(c string) bool { return c == main }); len(others) > 0 && dc < .25 {
		currency = others[int(dc/.25*float64(len(others)))]
	}
	var monthly, yearly []planJSON
	for _, p := range w.plans {
		if p.Currency == currency && p.Interval == "year" {
			yearly = append(yearly, p)
		} else if p.Currency == currency {
			monthly = append(monthly, p)
		}
	}
	tiers := monthly
	if len(monthly) == 0 || (len(yearly) > 0 && di < .25) {
		tiers = yearly
	}
	slices.SortStableFunc(tiers, func(a, b planJSON) int { return int(a.UnitAmount - b.UnitAmount) })
	// Weights n, n-1, ..., 1 from the cheapest.
	n := len(tiers)
	pick := dt * float64(n*(n+1)/2)
	for i, p := range tiers {
		if pick -= float64(n - i); pick < 0 {
			return p
		}
	}
	return tiers[n-1]
}

// neighbour is the next plan up (dir +1) or down (-1) in price with the same currency and
// interval.
func (w *demoWalk) neighbour(from planJSON, dir int) (planJSON, bool) {
	var same []planJSON
	for _, p := range w.plans {
		if p.Currency == from.Currency && p.Interval == from.Interval {
			same = append(same, p)
		}
	}
	slices.SortStableFunc(same, func(a, b planJSON) int { return int(a.UnitAmount - b.UnitAmount) })
	i := slices.IndexFunc(same, func(p planJSON) bool { return p.ID == from.ID })
	if i < 0 || i+dir < 0 || i+dir >= len(same) {
		return planJSON{}, false
	}
	return same[i+dir], true
}

// plan looks a plan up by id; a plan the catalog no longer lists is kept by id alone, which
// makes it nobody's neighbour.
func (w *demoWalk) plan(id string) planJSON {
	if i := slices.IndexFunc(w.plans, func(p planJSON) bool { return p.ID == id }); i >= 0 {
		return w.plans[i]
	}
	return planJSON{ID: id}
}
