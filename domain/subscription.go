package domain

import "time"

// Status is a subscription's lifecycle state.
type Status string

const (
	StatusTrialing Status = "trialing"
	StatusActive   Status = "active"
	StatusPastDue  Status = "past_due"
	StatusPaused   Status = "paused"
	StatusCanceled Status = "canceled"
	// StatusUnpaid ends dunning without canceling (per configuration): the
	// subscription stays, unpaid and without access, until paid or canceled.
	StatusUnpaid Status = "unpaid"
)

// Subscription is the state folded from a subscription's events. It is a
// plain value: only Evolve produces a new one, so the state is always
// exactly what its history says. Its slices and pointer are shared with the
// events it came from and must not be modified in place.
//
// Snapshots store this value: changing its shape, or what Evolve folds a
// history to, requires bumping eventstore.SubscriptionStateSchemaVersion so
// that older snapshots are ignored rather than misread.
type Subscription struct {
	ID                string
	CustomerID        string
	Plan              PlanTerms
	Seats             int64
	Status            Status
	BillingAnchor     time.Time // periods advance from here
	PeriodStart       time.Time
	PeriodEnd         time.Time
	TrialEnd          time.Time // zero when no trial
	CancelAtPeriodEnd bool
	PaymentMethod     string           // the default payment method token; "" if none
	TrialWillEndSent  bool             // subscription.trial_will_end was recorded
	CanceledAt        time.Time        // zero unless canceled
	PausedAt          time.Time        // zero unless paused
	ScheduledChange   *ScheduledChange // a plan change taking effect at period end
	CreatedAt         time.Time
	UpdatedAt         time.Time
	Version           int64 // number of events folded
}

// ScheduledChange is a plan change waiting for the period end.
type ScheduledChange struct {
	Plan        PlanTerms `json:"plan"`
	Seats       int64     `json:"seats"`
	EffectiveAt time.Time `json:"effective_at"`
}

// Exists reports whether any event has been folded.
func (s Subscription) Exists() bool { return s.Version > 0 }

// MRR is the subscription's contribution to monthly recurring revenue now.
// Following the usual SaaS definition, trials and paused subscriptions
// contribute nothing because they are not being paid for; past_due still
// counts because the revenue is owed and usually recovered.
func (s Subscription) MRR() int64 {
	if s.Status != StatusActive && s.Status != StatusPastDue {
		return 0
	}
	return s.Plan.MonthlyAmount(s.Seats)
}

// Evolve applies one event to the state. It handles every Event type defined
// in this package (a test enforces it) and cannot fail, since an event is a
// fact that already happened; any other value leaves the state unchanged.
func Evolve(s Subscription, e Event) Subscription {
	switch e := e.(type) {
	case SubscriptionCreated:
		s = Subscription{
			ID:            e.SubscriptionID,
			CustomerID:    e.CustomerID,
			Plan:          e.Plan,
			Seats:         e.Seats,
			Status:        e.Status,
			BillingAnchor: e.BillingAnchor,
			PeriodStart:   e.PeriodStart,
			PeriodEnd:     e.PeriodEnd,
			CreatedAt:     e.CreatedAt,
			Version:       s.Version,
		}
		if e.TrialEnd != nil {
			s.TrialEnd = *e.TrialEnd
		}
		s.PaymentMethod = e.PaymentMethod
	case PlanChanged:
		s.Plan, s.Seats = e.Plan, e.Seats
		s.BillingAnchor, s.PeriodStart, s.PeriodEnd = e.BillingAnchor, e.PeriodStart, e.PeriodEnd
		s.ScheduledChange = nil
	case PlanChangeScheduled:
		s.ScheduledChange = &ScheduledChange{Plan: e.Plan, Seats: e.Seats, EffectiveAt: e.EffectiveAt}
	case SeatsChanged:
		s.Seats = e.Seats
	case CancellationScheduled:
		s.CancelAtPeriodEnd = true
		s.ScheduledChange = nil
	case CancellationUndone:
		s.CancelAtPeriodEnd = false
	case Canceled:
		s.Status = StatusCanceled
		s.CanceledAt = e.CanceledAt
		s.CancelAtPeriodEnd = false
		s.PausedAt = time.Time{}
		s.ScheduledChange = nil
	case Paused:
		s.Status = StatusPaused
		s.PausedAt = e.PausedAt
	case Resumed:
		s.Status = StatusActive
		s.PausedAt = time.Time{}
	case PaymentMethodChanged:
		s.PaymentMethod = e.PaymentMethod
	case Renewed:
		s.Plan, s.Seats = e.Plan, e.Seats
		s.BillingAnchor, s.PeriodStart, s.PeriodEnd = e.BillingAnchor, e.PeriodStart, e.PeriodEnd
		s.ScheduledChange = nil
		if s.Status == StatusTrialing {
			s.Status = StatusActive
		}
	case TrialWillEnd:
		s.TrialWillEndSent = true
	case PastDue:
		s.Status = StatusPastDue
	case PaymentRecovered:
		s.Status = StatusActive
	case MarkedUnpaid:
		s.Status = StatusUnpaid
	case UpgradeFailed:
		// A record for the audit trail: the state is what it was before the attempt.
	default:
		return s
	}
	s.Version++
	s.UpdatedAt = e.OccurredAt()
	return s
}

// Fold replays events from the zero state.
func Fold(events []Event) Subscription {
	var s Subscription
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s
}
