package httpapi

import (
	"net/http"
	"regexp"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/payments"
)

// subscriptionJSON is the API's representation of a subscription.
type subscriptionJSON struct {
	ID                 string               `json:"id"`
	CustomerID         string               `json:"customer_id"`
	PlanID             string               `json:"plan_id"`
	Status             domain.Status        `json:"status"`
	Seats              int64                `json:"seats"`
	Currency           string               `json:"currency"`
	UnitAmount         int64                `json:"unit_amount"`
	Interval           domain.Interval      `json:"interval"`
	MRR                int64                `json:"mrr"`
	PaymentMethod      *string              `json:"payment_method"`
	Features           []string             `json:"features"`
	CurrentPeriodStart time.Time            `json:"current_period_start"`
	CurrentPeriodEnd   time.Time            `json:"current_period_end"`
	TrialEnd           *time.Time           `json:"trial_end"`
	CancelAtPeriodEnd  bool                 `json:"cancel_at_period_end"`
	CanceledAt         *time.Time           `json:"canceled_at"`
	PausedAt           *time.Time           `json:"paused_at"`
	ScheduledChange    *scheduledChangeJSON `json:"scheduled_change"`
	Version            int64                `json:"version"`
	CreatedAt          time.Time            `json:"created_at"`
	UpdatedAt          time.Time            `json:"updated_at"`
}

type scheduledChangeJSON struct {
	PlanID      string    `json:"plan_id"`
	Seats       int64     `json:"seats"`
	UnitAmount  int64     `json:"unit_amount"`
	EffectiveAt time.Time `json:"effective_at"`
}

func toSubscriptionJSON(s domain.Subscription) subscriptionJSON {
	out := subscriptionJSON{
		ID: s.ID, CustomerID: s.CustomerID, PlanID: s.Plan.PlanID, Status: s.Status, Seats: s.Seats,
		Currency: s.Plan.Currency, UnitAmount: s.Plan.UnitAmount, Interval: s.Plan.Interval, MRR: s.MRR(),
		Features:           append([]string{}, s.Plan.Features...),
		PaymentMethod:      optionalString(s.PaymentMethod),
		CurrentPeriodStart: s.PeriodStart, CurrentPeriodEnd: s.PeriodEnd,
		TrialEnd: optionalTime(s.TrialEnd), CancelAtPeriodEnd: s.CancelAtPeriodEnd,
		CanceledAt: optionalTime(s.CanceledAt), PausedAt: optionalTime(s.PausedAt),
		Version: s.Version, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
	if c := s.ScheduledChange; c != nil {
		out.ScheduledChange = &scheduledChangeJSON{PlanID: c.Plan.PlanID, Seats: c.Seats, UnitAmount: c.Plan.UnitAmount, EffectiveAt: c.EffectiveAt}
	}
	return out
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// changeResultJSON answers plan and seat changes: the subscription after the change, and the
// proration the change produced (empty when it takes effect later or costs nothing).
type changeResultJSON struct {
	Subscription subscriptionJSON `json:"subscription"`
	Proration    prorationJSON    `json:"proration"`
	// Upgrade is the saga that charged for the change; null for a change that cost nothing now.
	Upgrade *upgradeJSON `json:"upgrade"`
}

type prorationJSON struct {
	Lines    []domain.ProrationLine `json:"lines"`
	Total    int64                  `json:"total"`
	Currency string                 `json:"currency"`
}

func toChangeResult(s domain.Subscription, events []domain.Event) any {
	p := prorationJSON{Lines: []domain.ProrationLine{}, Currency: s.Plan.Currency}
	for _, e := range events {
		var lines []domain.ProrationLine
		switch e := e.(type) {
		case domain.PlanChanged:
			lines = e.Proration
		case domain.SeatsChanged:
			lines = e.Proration
		}
		for _, l := range lines {
			p.Lines = append(p.Lines, l)
			p.Total += l.Amount
		}
	}
	return changeResultJSON{Subscription: toSubscriptionJSON(s), Proration: p}
}

func subscriptionResult(s domain.Subscription, _ []domain.Event) any { return toSubscriptionJSON(s) }

// customerIDPattern: customer ids come from the caller's own system (e.g. "cus_123").
var customerIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

type createRequest struct {
	CustomerID string `json:"customer_id"`
	PlanID     string `json:"plan_id"`
	Seats      int64  `json:"seats"`
	TrialDays  *int   `json:"trial_days,omitempty"`
	// PaymentMethod is the default payment method (a token of the payment provider); absent for
	// none yet. An empty string is refused, not taken for absent.
	PaymentMethod *string `json:"payment_method,omitempty"`
}

func (a *API) createSubscription(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if p := decodeJSON(w, r, &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	var errs []FieldError
	if !customerIDPattern.MatchString(req.CustomerID) {
		errs = append(errs, FieldError{"/customer_id", "required: 1-128 letters, digits, _ . : - (starting with a letter or digit)"})
	}
	plan := a.lookupPlan(req.PlanID, &errs)
	if err := domain.ValidateSeats(req.Seats); err != nil {
		errs = append(errs, FieldError{"/seats", err.Error()})
	}
	if req.TrialDays != nil {
		if err := domain.ValidateTrialDays(*req.TrialDays); err != nil {
			errs = append(errs, FieldError{"/trial_days", err.Error()})
		}
	}
	if req.PaymentMethod != nil && !payments.ValidPaymentMethod(*req.PaymentMethod) {
		errs = append(errs, FieldError{"/payment_method", paymentMethodRule})
	}
	if len(errs) > 0 {
		writeProblem(w, r, invalidFields(errs))
		return
	}
	id := uuid.Must(uuid.NewV7())
	cmd := domain.Create{SubscriptionID: id.String(), CustomerID: req.CustomerID, Plan: plan, Seats: req.Seats,
		TrialDays: req.TrialDays}
	if req.PaymentMethod != nil {
		cmd.PaymentMethod = *req.PaymentMethod
	}
	a.execute(w, r, command{
		subscriptionID: id, request: req, successStatus: http.StatusCreated, create: true, customerID: req.CustomerID,
		decide:  func(s domain.Subscription, now time.Time) ([]domain.Event, error) { return domain.Decide(s, cmd, now) },
		respond: subscriptionResult,
	})
}

type changePlanRequest struct {
	PlanID string        `json:"plan_id"`
	Seats  *int64        `json:"seats,omitempty"`
	Timing domain.Timing `json:"timing,omitempty"`
}

func (a *API) changePlan(w http.ResponseWriter, r *http.Request) {
	var req changePlanRequest
	id, ok := a.decodeCommand(w, r, &req)
	if !ok {
		return
	}
	var errs []FieldError
	plan := a.lookupPlan(req.PlanID, &errs)
	cmd := domain.ChangePlan{Plan: plan, Timing: req.Timing}
	if req.Seats != nil {
		cmd.Seats = *req.Seats
		if err := domain.ValidateSeats(*req.Seats); err != nil {
			errs = append(errs, FieldError{"/seats", err.Error()})
		}
	}
	switch req.Timing {
	case domain.TimingDefault, domain.TimingImmediate, domain.TimingPeriodEnd:
	default:
		errs = append(errs, FieldError{"/timing", `must be "immediate" or "period_end"`})
	}
	if len(errs) > 0 {
		writeProblem(w, r, invalidFields(errs))
		return
	}
	a.executeChange(w, r, id, req, cmd)
}

type seatsRequest struct {
	Seats int64 `json:"seats"`
}

func (a *API) changeSeats(w http.ResponseWriter, r *http.Request) {
	var req seatsRequest
	id, ok := a.decodeCommand(w, r, &req)
	if !ok {
		return
	}
	if err := domain.ValidateSeats(req.Seats); err != nil {
		writeProblem(w, r, invalidFields([]FieldError{{"/seats", err.Error()}}))
		return
	}
	a.executeChange(w, r, id, req, domain.ChangeSeats{Seats: req.Seats})
}

// paymentMethodRule describes a valid payment method token.
const paymentMethodRule = "a payment method token: pm_ followed by 1-60 lower-case letters, digits or _ (e.g. pm_card_ok)"

type paymentMethodRequest struct {
	PaymentMethod string `json:"payment_method"`
}

func (a *API) changePaymentMethod(w http.ResponseWriter, r *http.Request) {
	var req paymentMethodRequest
	id, ok := a.decodeCommand(w, r, &req)
	if !ok {
		return
	}
	if !payments.ValidPaymentMethod(req.PaymentMethod) {
		writeProblem(w, r, invalidFields([]FieldError{{"/payment_method", "required: " + paymentMethodRule}}))
		return
	}
	a.executeCommand(w, r, id, req, domain.ChangePaymentMethod{PaymentMethod: req.PaymentMethod}, http.StatusOK, subscriptionResult)
}

type cancelRequest struct {
	AtPeriodEnd bool `json:"at_period_end"`
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	var req cancelRequest
	if id, ok := a.decodeCommand(w, r, &req); ok {
		a.executeCommand(w, r, id, req, domain.Cancel{AtPeriodEnd: req.AtPeriodEnd}, http.StatusOK, subscriptionResult)
	}
}

// emptyRequest is the body of commands that take no parameters: {} or nothing.
type emptyRequest struct{}

// simpleCommand serves a command that takes no parameters.
func (a *API) simpleCommand(cmd domain.Command) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req emptyRequest
		if id, ok := a.decodeCommand(w, r, &req); ok {
			a.executeCommand(w, r, id, req, cmd, http.StatusOK, subscriptionResult)
		}
	}
}

// decodeCommand reads the subscription id from the path and the body into req.
func (a *API) decodeCommand(w http.ResponseWriter, r *http.Request, req any) (uuid.UUID, bool) {
	id, p := pathUUID(r, "id")
	if p == nil {
		p = decodeJSON(w, r, req)
	}
	if p != nil {
		writeProblem(w, r, p)
		return uuid.Nil, false
	}
	return id, true
}

func (a *API) executeCommand(w http.ResponseWriter, r *http.Request, id uuid.UUID, req any, cmd domain.Command,
	status int, respond func(domain.Subscription, []domain.Event) any) {
	a.execute(w, r, command{
		subscriptionID: id, request: req, successStatus: status,
		decide:  func(s domain.Subscription, now time.Time) ([]domain.Event, error) { return domain.Decide(s, cmd, now) },
		respond: respond,
	})
}

// executeChange runs a plan or seat change: one that costs money now goes through the upgrade
// saga (upgrades.go), anything else is appended at once.
func (a *API) executeChange(w http.ResponseWriter, r *http.Request, id uuid.UUID, req any, cmd domain.Command) {
	a.execute(w, r, command{
		subscriptionID: id, request: req, successStatus: http.StatusOK, paid: true,
		decide:  func(s domain.Subscription, now time.Time) ([]domain.Event, error) { return domain.Decide(s, cmd, now) },
		respond: toChangeResult,
	})
}

// lookupPlan finds a plan in the catalog, adding a field error when it is missing or unknown.
func (a *API) lookupPlan(id string, errs *[]FieldError) domain.Plan {
	if id == "" {
		*errs = append(*errs, FieldError{"/plan_id", "required"})
		return domain.Plan{}
	}
	plan, err := a.catalog.Plan(id)
	if err != nil {
		*errs = append(*errs, FieldError{"/plan_id", err.Error() + " (see GET /v1/plans)"})
	}
	return plan
}

// writeAggregate answers with the subscription folded from the event store (its latest
// snapshot and the events after it): always current, unlike the read model.
func (a *API) writeAggregate(w http.ResponseWriter, r *http.Request, id uuid.UUID) {
	sub, _, err := eventstore.LoadSubscriptionWithSnapshot(r.Context(), a.db, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !sub.Exists() {
		a.fail(w, r, domain.ErrSubscriptionNotFound)
		return
	}
	writeJSON(w, http.StatusOK, toSubscriptionJSON(sub))
}
