// Package backlog makes large, realistic event histories for the benchmarks that need a full
// event store (projection throughput, rebuilds). Customers subscribe (some on a trial), pay
// their first invoice (some after a decline, going past due and recovering), add seats or move
// up a plan through the upgrade saga, remove seats for a credit, schedule downgrades and
// cancellations, and renew period after period, each period invoiced and paid.
//
// Every event is decided in memory by the domain's own functions (domain.Decide,
// domain.IssueInvoice, domain.RecordPayment) and folded as the service folds it, so the events
// are the ones the service writes and every read model has work; nothing is read back from the
// database, which is what lets a benchmark seed a million events in well under a minute.
package backlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// Generator makes customers' histories. It is not safe for concurrent use; give each goroutine
// its own (with its own seed).
type Generator struct {
	rng   *rand.Rand
	start time.Time
	plans []domain.Plan
}

// New returns a generator whose customers arrive during the half year after start. The seed
// fixes the shape of the histories (the plans, actions and times), not the generated ids.
func New(seed uint64, start time.Time) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: start.UTC().Truncate(time.Second),
		plans: domain.DefaultCatalog().Plans()}
}

// Batch returns appends of exactly n events to new streams, each stream at most once, ready for
// one eventstore.AppendMany. The last customer's history is cut short to make n: each of its
// streams keeps a prefix of its events, which is still a valid history.
func (g *Generator) Batch(n int) ([]eventstore.StreamAppend, error) {
	var out []eventstore.StreamAppend
	for left := n; left > 0; {
		appends, err := g.Customer()
		if err != nil {
			return nil, err
		}
		for _, a := range appends {
			if left == 0 {
				break
			}
			if len(a.Events) > left {
				a.Events = a.Events[:left]
			}
			left -= len(a.Events)
			out = append(out, a)
		}
	}
	return out, nil
}

// Customer makes one customer's whole history: the appends of its subscription, customer,
// invoice and upgrade streams, each at expected version 0.
func (g *Generator) Customer() ([]eventstore.StreamAppend, error) {
	h := &history{g: g, subID: uuid.Must(uuid.NewV7()), customerID: "cus_" + uuid.Must(uuid.NewV7()).String()[24:]}
	if err := h.live(); err != nil {
		return nil, fmt.Errorf("backlog: customer %s: %w", h.customerID, err)
	}
	meta := eventstore.Metadata{Actor: "backlog", Source: "benchmark backlog", CorrelationID: uuid.Must(uuid.NewV7()).String()}
	streams := append([]*stream{{typ: eventstore.SubscriptionStream, id: h.subID, events: h.subEvents},
		{typ: eventstore.CustomerStream, id: eventstore.CustomerStreamID(h.customerID), events: h.custEvents}},
		h.others...)
	out := make([]eventstore.StreamAppend, 0, len(streams))
	for _, s := range streams {
		if len(s.events) == 0 {
			continue
		}
		enc, err := eventstore.EncodeEvents(s.events, meta)
		if err != nil {
			return nil, err
		}
		out = append(out, eventstore.StreamAppend{Stream: eventstore.Stream{ID: s.id, Type: s.typ}, Events: enc})
	}
	return out, nil
}

// stream is an invoice's or upgrade's events, with the invoice's state.
type stream struct {
	typ     string
	id      uuid.UUID
	events  []domain.Event
	invoice domain.Invoice
}

func (s *stream) add(e domain.Event) {
	s.events = append(s.events, e)
	if s.typ == eventstore.InvoiceStream {
		s.invoice = domain.EvolveInvoice(s.invoice, e)
	}
}

// history is one customer with one subscription, as it is being lived.
type history struct {
	g          *Generator
	subID      uuid.UUID
	sub        domain.Subscription
	subEvents  []domain.Event
	lastAt     time.Time // of the subscription's last event: commands come after it
	customerID string
	customer   domain.Customer
	custEvents []domain.Event
	others     []*stream // invoices and upgrades, in the order they began
}

func (h *history) rng() *rand.Rand { return h.g.rng }

// decide runs a subscription command and keeps its events.
func (h *history) decide(c domain.Command, now time.Time) ([]domain.Event, error) {
	events, err := domain.Decide(h.sub, c, now)
	if err != nil {
		return nil, err
	}
	h.apply(events...)
	return events, nil
}

func (h *history) apply(events ...domain.Event) {
	for _, e := range events {
		h.sub = domain.Evolve(h.sub, e)
		h.subEvents = append(h.subEvents, e)
		h.lastAt = e.OccurredAt()
	}
}

// live makes the whole history: the creation, then period after period of changes and renewals.
func (h *history) live() error {
	g, rng := h.g, h.rng()
	now := g.start.Add(time.Duration(rng.Int64N(int64(180 * 24 * time.Hour))))
	plan := g.pickPlan()
	trial := 0
	if rng.IntN(5) == 0 {
		trial = plan.TrialDays
	}
	if _, err := h.decide(domain.Create{SubscriptionID: h.subID.String(), CustomerID: h.customerID, Plan: plan,
		Seats: int64(rng.IntN(10) + 1), TrialDays: &trial, PaymentMethod: "pm_card_ok"}, now); err != nil {
		return err
	}
	if h.sub.Status == domain.StatusActive {
		if err := h.collect(h.periodInvoice(uuid.Must(uuid.NewV7()), domain.InvoiceForCreate, now), now, true); err != nil {
			return err
		}
	}
	periods := rng.IntN(12) + 1
	if plan.Interval == "year" {
		periods = rng.IntN(2) + 1
	}
	for range periods {
		if h.sub.Status == domain.StatusTrialing {
			if due, ok := h.sub.TrialReminderDue(); ok {
				if _, err := h.decide(domain.NotifyTrialWillEnd{}, due); err != nil {
					return fmt.Errorf("trial reminder: %w", err)
				}
			}
		} else if err := h.change(h.sub.PeriodStart.Add(time.Duration(rng.Float64() * 0.8 * float64(h.sub.PeriodEnd.Sub(h.sub.PeriodStart))))); err != nil {
			return err
		}
		// The scheduler renews a few minutes after the period ends.
		now = h.sub.PeriodEnd.Add(time.Duration(rng.IntN(600)) * time.Second)
		invoiceID := uuid.Must(uuid.NewV7())
		events, err := h.decide(domain.Renew{PeriodEnd: h.sub.PeriodEnd, InvoiceID: invoiceID.String()}, now)
		if err != nil {
			return fmt.Errorf("renew: %w", err)
		}
		if r, ok := events[0].(domain.Renewed); !ok {
			return nil // canceled at the period's end: the history ends
		} else if r.InvoiceID != "" {
			if err := h.collect(h.periodInvoice(invoiceID, domain.InvoiceForCycle, now), now, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// change makes at most one change during a period, weighted like real traffic: seat increases
// most often, then seat decreases, plan upgrades, scheduled downgrades and cancellations.
func (h *history) change(now time.Time) error {
	rng := h.rng()
	if now = later(now, h.lastAt.Add(time.Minute)); !now.Before(h.sub.PeriodEnd) {
		return nil
	}
	var err error
	switch k := rng.IntN(100); {
	case k < 25:
		err = h.upgrade(domain.ChangeSeats{Seats: min(h.sub.Seats+int64(rng.IntN(3)+1), domain.MaxSeats)}, now)
	case k < 35 && h.sub.Seats > 1:
		err = h.credit(domain.ChangeSeats{Seats: h.sub.Seats - 1}, now)
	case k < 43:
		if to, ok := h.g.neighbour(h.sub.Plan, +1); ok {
			err = h.upgrade(domain.ChangePlan{Plan: to}, now)
		}
	case k < 51:
		if to, ok := h.g.neighbour(h.sub.Plan, -1); ok {
			_, err = h.decide(domain.ChangePlan{Plan: to}, now) // scheduled for the period's end
		}
	case k < 56:
		_, err = h.decide(domain.Cancel{AtPeriodEnd: true}, now)
	}
	if errors.Is(err, domain.ErrNoChange) || errors.Is(err, domain.ErrCancellationAlreadyScheduled) {
		return nil
	}
	return err
}

// upgrade makes a change that costs money the way the upgrade saga does: started, the proration
// invoice issued and paid, the change applied to the subscription, completed.
func (h *history) upgrade(c domain.Command, now time.Time) error {
	events, err := domain.Decide(h.sub, c, now)
	if err != nil {
		return err
	}
	change := events[0]
	lines, _ := domain.ProrationOf(change)
	var amount int64
	for _, l := range lines {
		amount += l.Amount
	}
	if amount <= 0 {
		return h.creditFor(change, now)
	}
	up := &stream{typ: eventstore.UpgradeStream, id: uuid.Must(uuid.NewV7())}
	h.others = append(h.others, up)
	started := domain.UpgradeStarted{UpgradeID: up.id.String(), SubscriptionID: h.sub.ID, CustomerID: h.sub.CustomerID,
		SubscriptionVersion: h.sub.Version, Amount: amount, Currency: h.sub.Plan.Currency,
		PaymentMethod: h.sub.PaymentMethod, StartedAt: now}
	switch c := change.(type) {
	case domain.PlanChanged:
		started.PlanChange = &c
	case domain.SeatsChanged:
		started.SeatsChange = &c
	}
	up.add(started)
	inv := h.issue(domain.InvoiceRequest{InvoiceID: uuid.Must(uuid.NewV7()).String(), SubscriptionID: h.sub.ID,
		CustomerID: h.sub.CustomerID, Currency: h.sub.Plan.Currency, Reason: domain.InvoiceForUpdate, Lines: lines,
		PeriodStart: lines[0].PeriodStart, PeriodEnd: lines[0].PeriodEnd, UpgradeID: up.id.String()}, now)
	up.add(domain.UpgradeInvoiced{InvoiceID: inv.id.String(), Total: inv.invoice.Total, At: now})
	charged := domain.UpgradeCharged{At: now}
	if inv.invoice.Status == domain.InvoiceOpen {
		if err := h.pay(inv, now, true); err != nil {
			return err
		}
		charged.ChargeID, charged.Amount = inv.invoice.ChargeID, inv.invoice.AmountPaid
	}
	up.add(charged)
	h.apply(change)
	up.add(domain.UpgradePlanApplied{SubscriptionVersion: h.sub.Version, At: now})
	up.add(domain.UpgradeCompleted{At: now})
	return nil
}

// credit makes a change whose proration is negative, and issues its credit invoice.
func (h *history) credit(c domain.Command, now time.Time) error {
	events, err := domain.Decide(h.sub, c, now)
	if err != nil {
		return err
	}
	return h.creditFor(events[0], now)
}

func (h *history) creditFor(change domain.Event, now time.Time) error {
	h.apply(change)
	lines, _ := domain.ProrationOf(change)
	var total int64
	for _, l := range lines {
		total += l.Amount
	}
	if total < 0 {
		h.issue(domain.InvoiceRequest{InvoiceID: uuid.Must(uuid.NewV7()).String(), SubscriptionID: h.sub.ID,
			CustomerID: h.sub.CustomerID, Currency: h.sub.Plan.Currency, Reason: domain.InvoiceForUpdate, Lines: lines,
			PeriodStart: lines[0].PeriodStart, PeriodEnd: lines[0].PeriodEnd}, now)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// periodInvoice issues the invoice of the subscription's current period.
func (h *history) periodInvoice(id uuid.UUID, reason domain.InvoiceReason, now time.Time) *stream {
	s := h.sub
	line := domain.InvoiceLine{Description: fmt.Sprintf("%d × %s", s.Seats, s.Plan.Name), Amount: s.Plan.UnitAmount * s.Seats,
		Quantity: s.Seats, UnitAmount: s.Plan.UnitAmount, PeriodStart: s.PeriodStart, PeriodEnd: s.PeriodEnd, PlanID: s.Plan.PlanID}
	return h.issue(domain.InvoiceRequest{InvoiceID: id.String(), SubscriptionID: s.ID, CustomerID: s.CustomerID,
		Currency: s.Plan.Currency, Reason: reason, Lines: []domain.InvoiceLine{line},
		PeriodStart: s.PeriodStart, PeriodEnd: s.PeriodEnd}, now)
}

// issue numbers an invoice in the customer's series (applying its credit) and starts its stream.
func (h *history) issue(r domain.InvoiceRequest, now time.Time) *stream {
	issued, created, _ := domain.IssueInvoice(h.customer, r, now) // fails only for another customer's invoice
	h.customer = domain.EvolveCustomer(h.customer, issued)
	h.custEvents = append(h.custEvents, issued)
	inv := &stream{typ: eventstore.InvoiceStream, id: uuid.MustParse(r.InvoiceID)}
	inv.add(created)
	h.others = append(h.others, inv)
	return inv
}

// collect charges an open invoice; one in ten is declined first when mayFail, which makes the
// subscription past due until the retry a day later succeeds.
func (h *history) collect(inv *stream, now time.Time, mayFail bool) error {
	if inv.invoice.Status != domain.InvoiceOpen {
		return nil
	}
	if mayFail && h.rng().IntN(10) == 0 {
		if err := h.pay(inv, now, false); err != nil {
			return err
		}
		if _, err := h.decide(domain.MarkPastDue{InvoiceID: inv.id.String()}, now); err != nil && !errors.Is(err, domain.ErrNoChange) {
			return fmt.Errorf("past due: %w", err)
		}
		now = inv.invoice.NextAttemptAt
		if err := h.pay(inv, now, true); err != nil {
			return err
		}
		if _, err := h.decide(domain.RecoverPayment{InvoiceID: inv.id.String()}, now); err != nil && !errors.Is(err, domain.ErrNoChange) {
			return fmt.Errorf("recover: %w", err)
		}
		return nil
	}
	return h.pay(inv, now, true)
}

// pay records a charge attempt on an open invoice, as the sandbox gateway would answer it.
func (h *history) pay(inv *stream, now time.Time, succeed bool) error {
	attempt := inv.invoice.Attempts + 1
	charge := domain.Charge{ID: fmt.Sprintf("ch_%s_%d", inv.id.String()[24:], attempt), Status: domain.ChargeSucceeded,
		Amount: inv.invoice.Total, Currency: inv.invoice.Currency}
	if !succeed {
		charge.Status, charge.DeclineCode, charge.DeclineMessage = domain.ChargeDeclined, domain.DeclineCardDeclined, "Your card was declined."
	}
	e, err := domain.RecordPayment(inv.invoice, charge, attempt, domain.DefaultDunningPolicy, now)
	if err != nil {
		return fmt.Errorf("payment of %s: %w", inv.id, err)
	}
	inv.add(e)
	return nil
}

// pickPlan picks a plan: monthly ones four times as often as yearly ones.
func (g *Generator) pickPlan() domain.Plan {
	for {
		p := g.plans[g.rng.IntN(len(g.plans))]
		if p.Interval != "year" || g.rng.IntN(4) == 0 {
			return p
		}
	}
}

// neighbour is the next dearer (dir +1) or cheaper (dir -1) plan of the same interval and
// currency, in catalog order.
func (g *Generator) neighbour(current domain.PlanTerms, dir int) (domain.Plan, bool) {
	var same []domain.Plan
	at := -1
	for _, p := range g.plans {
		if p.Interval == current.Interval && p.Currency == current.Currency {
			if p.ID == current.PlanID {
				at = len(same)
			}
			same = append(same, p)
		}
	}
	if at < 0 || at+dir < 0 || at+dir >= len(same) {
		return domain.Plan{}, false
	}
	return same[at+dir], true
}
