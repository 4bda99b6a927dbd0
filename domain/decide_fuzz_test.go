package domain_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
)

// FuzzDecide runs a program of up to 64 commands, read from the fuzzer's bytes, against one
// subscription: random command kinds, fields (valid, extreme and invalid plans, seats, trials,
// timings, ids) and times (forwards, backwards, across period ends, in other time zones). Each
// command is decided against the state folded from the events decided so far. Properties:
//   - Decide never panics and is a pure function of its arguments;
//   - an error is one of the domain's own errors and comes with no events;
//   - success is at least one event, each surviving the JSON round trip the store puts it
//     through, dated now (UTC, whole seconds);
//   - the state folded after every step keeps the invariants below (seats within
//     1..MaxSeats, PeriodStart < PeriodEnd, time and Version never going backwards, …);
//   - replaying all the events from scratch gives exactly the state built step by step.
func FuzzDecide(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzDecide", decideSeeds())
	f.Fuzz(func(t *testing.T, program []byte) {
		r := &programReader{data: program}
		now := decideBases[int(r.byte())%len(decideBases)]
		var s domain.Subscription
		var history []domain.Event
		for step := 0; step < 64 && !r.done(); step++ {
			c := r.command(s)
			now = r.advance(now, s)
			before := cloneSubscription(s)
			events, err := domain.Decide(s, c, now)
			where := fmt.Sprintf("step %d: Decide(%s, %#v, %s)", step, describeState(before), c, now.Format(time.RFC3339Nano))

			if !reflect.DeepEqual(s, before) {
				t.Fatalf("%s modified the state it was given", where)
			}
			events2, err2 := domain.Decide(s, c, now)
			if !reflect.DeepEqual(events, events2) || fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("%s is not deterministic: %v, %v then %v, %v", where, events, err, events2, err2)
			}
			if err != nil {
				if len(events) != 0 {
					t.Fatalf("%s = %d events and error %v; an error must come with no events", where, len(events), err)
				}
				if !isDomainError(err) {
					t.Fatalf("%s = %v (%T), which is none of the domain's errors (the API would answer 500)", where, err, err)
				}
				checkRefusal(t, where, s, c, now, err)
				continue
			}
			if len(events) == 0 {
				t.Fatalf("%s succeeded with no events", where)
			}
			wantAt := now.UTC().Truncate(time.Second)
			if _, ok := c.(domain.RecordUpgradeFailed); ok {
				// A compensation is recorded whenever it comes, dated no earlier than the last event.
				wantAt = later(wantAt, s.UpdatedAt)
			}
			for _, e := range events {
				checkPersistable(t, where, e)
				if !e.OccurredAt().Equal(wantAt) || e.OccurredAt().Location() != time.UTC {
					t.Errorf("%s: %s occurred at %s, want %s (UTC, whole seconds)", where, e.EventType(), e.OccurredAt(), wantAt)
				}
				checkProration(t, where, e, s)
				next := domain.Evolve(s, e)
				checkTransition(t, where, s, next, e)
				s = next
			}
			history = append(history, events...)
			checkInvariants(t, where, s)
			checkOutcome(t, where, before, c, now, events, s)
			checkPaidChange(t, where, events)
			if _, ok := c.(domain.Renew); ok {
				// A repeat (a second process, a retry) changes nothing.
				again, err := domain.Decide(s, c, now)
				var renewed *domain.AlreadyRenewedError
				if len(again) != 0 || !(errors.As(err, &renewed) || errors.Is(err, domain.ErrSubscriptionCanceled)) {
					t.Errorf("%s: the same renewal again = %d events, %v; want *AlreadyRenewedError (or canceled) and none", where, len(again), err)
				}
			}
		}
		if replayed := domain.Fold(history); !reflect.DeepEqual(replayed, s) {
			t.Errorf("replaying %d events gives %s, but step by step gave %s", len(history), describeState(replayed), describeState(s))
		}
	})
}

// decideBases are the times a program starts at: a month end (periods clamp to shorter months),
// a leap day, the Unix epoch, a time in another zone, and one with a fraction of a second.
var decideBases = []time.Time{
	time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC),
	time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC),
	time.Unix(0, 0).UTC(),
	time.Date(2026, 3, 29, 1, 30, 0, 0, time.FixedZone("UTC+13:45", 13*3600+45*60)),
	time.Date(2026, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
}

// Programs stay within [minTime, maxTime]: times the service's clock can give, far enough from
// year 9999 that every period end a command computes is still a time JSON can encode.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// programReader turns the fuzzer's bytes into commands; past the end it reads zeros.
type programReader struct{ data []byte }

func (r *programReader) done() bool { return len(r.data) == 0 }

func (r *programReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *programReader) uint64() uint64 {
	var b [8]byte
	for i := range b {
		b[i] = r.byte()
	}
	return binary.BigEndian.Uint64(b[:])
}

// Command kinds, by the first byte of each step.
const (
	kindCreate = iota
	kindChangePlan
	kindChangeSeats
	kindCancel
	kindUndoCancel
	kindPause
	kindResume
	// The billing cycle's commands, which processes (renewal, dunning, the upgrade saga) send.
	kindRenew
	kindNotifyTrialWillEnd
	kindMarkPastDue
	kindRecoverPayment
	kindEndDunning
	kindChangePaymentMethod
	kindRecordUpgradeFailed
	kindNil // not a command at all
	kindCount
)

// command reads the next command. s is the state it will be decided against: a renewal names
// a period end, and the interesting ones are the current period's and its neighbours.
func (r *programReader) command(s domain.Subscription) domain.Command {
	switch r.byte() % kindCount {
	case kindCreate:
		c := domain.Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: r.plan(), Seats: r.seats(), TrialDays: r.trialDays()}
		switch r.byte() % 8 {
		case 1:
			c.SubscriptionID = ""
		case 2:
			c.CustomerID = " \t"
		case 3:
			c.CustomerID = "x'); DROP TABLE events;--\x00"
		case 4, 5, 6:
			c.PaymentMethod = "pm_1" // so that a trial converts instead of ending
		}
		return c
	case kindRenew:
		return domain.Renew{PeriodEnd: r.periodEnd(s), InvoiceID: r.id("inv"), CancelTrialWithoutPaymentMethod: r.byte()%2 == 1}
	case kindNotifyTrialWillEnd:
		return domain.NotifyTrialWillEnd{}
	case kindMarkPastDue:
		return domain.MarkPastDue{InvoiceID: r.id("inv")}
	case kindRecoverPayment:
		return domain.RecoverPayment{InvoiceID: r.id("inv")}
	case kindEndDunning:
		return domain.EndDunning{InvoiceID: r.id("inv"), MarkUnpaid: r.byte()%2 == 1}
	case kindChangePaymentMethod:
		return domain.ChangePaymentMethod{PaymentMethod: r.id("pm")}
	case kindRecordUpgradeFailed:
		return domain.RecordUpgradeFailed{UpgradeID: r.id("upg"), Plan: r.plan().Terms(), Seats: r.seats(),
			Reason: r.id(domain.UpgradeReasonDeclined), DeclineCode: r.id(domain.DeclineCardDeclined)}
	case kindChangePlan:
		timings := []domain.Timing{domain.TimingDefault, domain.TimingImmediate, domain.TimingPeriodEnd, "tomorrow", "IMMEDIATE"}
		c := domain.ChangePlan{Plan: r.plan(), Timing: timings[int(r.byte())%len(timings)]}
		if r.byte()%2 == 1 {
			c.Seats = r.seats() // else 0: keep the current seats
		}
		return c
	case kindChangeSeats:
		return domain.ChangeSeats{Seats: r.seats()}
	case kindCancel:
		return domain.Cancel{AtPeriodEnd: r.byte()%2 == 1}
	case kindUndoCancel:
		return domain.UndoCancel{}
	case kindPause:
		return domain.Pause{}
	case kindResume:
		return domain.Resume{}
	}
	return nil
}

// fuzzPlans are the catalog's plans, then extreme valid plans, then invalid ones.
var fuzzPlans = func() []domain.Plan {
	plans := domain.DefaultCatalog().Plans()
	plans = append(plans,
		domain.Plan{ID: "max_yearly", Name: "Max", Interval: domain.IntervalYear, UnitAmount: domain.MaxUnitAmount, Currency: "USD", TrialDays: domain.MaxTrialDays},
		domain.Plan{ID: "max_monthly", Name: "Max", Interval: domain.IntervalMonth, UnitAmount: domain.MaxUnitAmount, Currency: "USD", Features: []string{}},
		domain.Plan{ID: "free", Name: "Free", Interval: domain.IntervalMonth, UnitAmount: 0, Currency: "USD"},
		domain.Plan{ID: "odd_yearly", Name: "Odd", Interval: domain.IntervalYear, UnitAmount: 7, Currency: "USD", Features: []string{"a"}},
		domain.Plan{ID: "yen", Name: "Yen", Interval: domain.IntervalMonth, UnitAmount: 500, Currency: "JPY", TrialDays: 1},
		// Invalid: Decide must refuse them, never compute with them.
		domain.Plan{},
		domain.Plan{ID: "weekly", Name: "Weekly", Interval: "week", UnitAmount: 100, Currency: "USD"},
		domain.Plan{ID: "negative", Name: "Negative", Interval: domain.IntervalMonth, UnitAmount: -1, Currency: "USD"},
		domain.Plan{ID: "too_dear", Name: "Dear", Interval: domain.IntervalYear, UnitAmount: domain.MaxUnitAmount + 1, Currency: "USD"},
		domain.Plan{ID: "usd_lower", Name: "Lower", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "usd"},
		domain.Plan{ID: "Bad ID", Name: "Bad", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "USD"},
		domain.Plan{ID: "long_trial", Name: "Long", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "USD", TrialDays: domain.MaxTrialDays + 1},
		domain.Plan{ID: "empty_feature", Name: "Empty", Interval: domain.IntervalMonth, UnitAmount: 100, Currency: "USD", Features: []string{""}},
	)
	return plans
}()

func (r *programReader) plan() domain.Plan {
	p := fuzzPlans[int(r.byte())%len(fuzzPlans)]
	p.Features = slices.Clone(p.Features)
	return p
}

func (r *programReader) seats() int64 {
	switch r.byte() % 9 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return -1
	case 3:
		return domain.MaxSeats
	case 4:
		return domain.MaxSeats + 1
	case 5:
		return math.MinInt64
	case 6:
		return math.MaxInt64
	case 7:
		return int64(r.byte()%10) + 1
	}
	return int64(r.uint64())
}

func (r *programReader) trialDays() *int {
	var d int
	switch r.byte() % 8 {
	case 0:
		return nil // the plan's default
	case 1:
		d = 0
	case 2:
		d = 1
	case 3:
		d = domain.MaxTrialDays
	case 4:
		d = domain.MaxTrialDays + 1
	case 5:
		d = -1
	case 6:
		d = math.MinInt
	default:
		d = int(r.byte())
	}
	return &d
}

// id is an identifier: one of two valid ones (prefix_1, prefix_2), or empty, blank, NUL,
// injection or very long. Every id reaches Decide from JSON or a UUID, so it is valid UTF-8:
// invalid UTF-8 would not survive the events' JSON round trip, and no caller can send it.
func (r *programReader) id(prefix string) string {
	switch r.byte() % 8 {
	case 0:
		return prefix + "_1"
	case 1:
		return prefix + "_2"
	case 2:
		return ""
	case 3:
		return " \t\n"
	case 4:
		return "\x00"
	case 5:
		return "x'); DROP TABLE events;--"
	case 6:
		return strings.Repeat("é", 300)
	}
	return prefix + "_1"
}

// periodEnd is the period end a renewal names: the current one (also written in another zone),
// a second either side of it, the previous one (the current period's start), the next one, the
// zero time, or one far away.
func (r *programReader) periodEnd(s domain.Subscription) time.Time {
	switch r.byte() % 8 {
	case 1:
		return s.PeriodEnd.In(time.FixedZone("UTC-09:30", -(9*3600 + 30*60)))
	case 2:
		return s.PeriodEnd.Add(-time.Second)
	case 3:
		return s.PeriodEnd.Add(time.Second)
	case 4:
		return s.PeriodStart
	case 5:
		if s.Plan.Interval.Valid() {
			return domain.AddInterval(s.BillingAnchor, s.Plan.Interval, 2)
		}
		return s.PeriodEnd
	case 6:
		return time.Time{}
	case 7:
		return time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	}
	return s.PeriodEnd
}

// advance moves the command time: not at all, by a second either way, within a second, by a
// day, past a monthly or yearly period end, by any signed 32-bit number of seconds, to the
// current period's end (when a renewal is due), or to when the trial reminder is due.
func (r *programReader) advance(now time.Time, s domain.Subscription) time.Time {
	switch r.byte() % 10 {
	case 1:
		now = now.Add(time.Second)
	case 2:
		now = now.Add(-time.Second)
	case 3:
		now = now.Add(500 * time.Millisecond)
	case 4:
		now = now.AddDate(0, 0, 1)
	case 5:
		now = now.AddDate(0, 1, 1)
	case 6:
		now = now.AddDate(1, 0, 1)
	case 7:
		now = now.Add(time.Duration(int32(r.uint64())) * time.Second)
	case 8:
		if s.Exists() {
			now = s.PeriodEnd
		}
	case 9:
		if !s.TrialEnd.IsZero() {
			now = s.TrialEnd.Add(-domain.TrialReminder)
		}
	}
	if now.Before(minTime) {
		return minTime
	}
	if now.After(maxTime) {
		return maxTime
	}
	return now
}

// isDomainError reports whether err is one of the errors Decide documents (errors.go).
func isDomainError(err error) bool {
	for _, sentinel := range []error{domain.ErrSubscriptionNotFound, domain.ErrSubscriptionExists,
		domain.ErrSubscriptionCanceled, domain.ErrNoChange, domain.ErrCancellationNotScheduled,
		domain.ErrCancellationAlreadyScheduled, domain.ErrUnknownCommand, domain.ErrPaymentMethodRequired, domain.ErrInvoiceIDRequired} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	var (
		seats      *domain.InvalidSeatsError
		trial      *domain.InvalidTrialError
		customer   *domain.InvalidCustomerError
		id         *domain.InvalidSubscriptionIDError
		unknown    *domain.UnknownPlanError
		plan       *domain.InvalidPlanError
		currency   *domain.CurrencyMismatchError
		timing     *domain.InvalidTimingError
		transition *domain.InvalidTransitionError
		order      *domain.TimeOrderError
		ended      *domain.PeriodEndedError
		renewed    *domain.AlreadyRenewedError
		notDue     *domain.NotDueError
	)
	return errors.As(err, &seats) || errors.As(err, &trial) || errors.As(err, &customer) ||
		errors.As(err, &id) || errors.As(err, &unknown) || errors.As(err, &plan) ||
		errors.As(err, &currency) || errors.As(err, &timing) || errors.As(err, &transition) ||
		errors.As(err, &order) || errors.As(err, &ended) || errors.As(err, &renewed) || errors.As(err, &notDue)
}

// checkRefusal checks refusals the state alone decides.
func checkRefusal(t *testing.T, where string, s domain.Subscription, c domain.Command, now time.Time, err error) {
	t.Helper()
	if c == nil {
		if !errors.Is(err, domain.ErrUnknownCommand) {
			t.Errorf("%s = %v, want ErrUnknownCommand", where, err)
		}
		return
	}
	_, isCreate := c.(domain.Create)
	_, isUpgradeFailed := c.(domain.RecordUpgradeFailed)
	switch {
	case isCreate && s.Exists():
		if !errors.Is(err, domain.ErrSubscriptionExists) {
			t.Errorf("%s = %v, want ErrSubscriptionExists", where, err)
		}
	case !isCreate && !s.Exists():
		if !errors.Is(err, domain.ErrSubscriptionNotFound) {
			t.Errorf("%s = %v, want ErrSubscriptionNotFound", where, err)
		}
	case isUpgradeFailed:
		t.Errorf("%s = %v; a failed upgrade must always be recordable", where, err)
	case !isCreate && s.Status == domain.StatusCanceled:
		if !errors.Is(err, domain.ErrSubscriptionCanceled) {
			t.Errorf("%s = %v, want ErrSubscriptionCanceled", where, err)
		}
	case s.Status == domain.StatusUnpaid && refusedWhileUnpaid(c):
		var transition *domain.InvalidTransitionError
		if !errors.As(err, &transition) {
			t.Errorf("%s = %v, want *InvalidTransitionError: unpaid allows only payment, cancellation and a new payment method", where, err)
		}
	}
	var notDue *domain.NotDueError
	if r, ok := c.(domain.Renew); ok && s.Exists() && s.Status != domain.StatusCanceled && s.Status != domain.StatusUnpaid &&
		!now.Before(s.UpdatedAt) {
		var renewed *domain.AlreadyRenewedError
		switch {
		case !r.PeriodEnd.Equal(s.PeriodEnd):
			if !errors.As(err, &renewed) {
				t.Errorf("%s = %v, want *AlreadyRenewedError: the period named is not the current one", where, err)
			}
		case now.Before(s.PeriodEnd):
			if !errors.As(err, &notDue) {
				t.Errorf("%s = %v, want *NotDueError: the period has not ended", where, err)
			}
		}
	}
	if errors.As(err, &notDue) && !now.Before(notDue.DueAt) {
		t.Errorf("%s = %v, but it was due at %s", where, err, notDue.DueAt)
	}
}

// refusedWhileUnpaid: an unpaid subscription has no periods and no access until it is paid, so
// it cannot renew, change, pause or be chased again.
func refusedWhileUnpaid(c domain.Command) bool {
	switch c.(type) {
	case domain.Renew, domain.ChangePlan, domain.ChangeSeats, domain.Pause, domain.Resume, domain.UndoCancel,
		domain.NotifyTrialWillEnd, domain.MarkPastDue:
		return true
	}
	return false
}

// statusMoves are the only status changes there are, by the events that make them.
var statusMoves = map[[2]domain.Status]string{
	{domain.StatusTrialing, domain.StatusActive}:   "subscription.renewed",
	{domain.StatusTrialing, domain.StatusCanceled}: "subscription.canceled",
	{domain.StatusActive, domain.StatusPastDue}:    "subscription.past_due",
	{domain.StatusActive, domain.StatusPaused}:     "subscription.paused",
	{domain.StatusActive, domain.StatusCanceled}:   "subscription.canceled",
	{domain.StatusPastDue, domain.StatusActive}:    "subscription.payment_recovered",
	{domain.StatusPastDue, domain.StatusUnpaid}:    "subscription.marked_unpaid",
	{domain.StatusPastDue, domain.StatusCanceled}:  "subscription.canceled",
	{domain.StatusUnpaid, domain.StatusActive}:     "subscription.payment_recovered",
	{domain.StatusUnpaid, domain.StatusCanceled}:   "subscription.canceled",
	{domain.StatusPaused, domain.StatusActive}:     "subscription.resumed",
	{domain.StatusPaused, domain.StatusCanceled}:   "subscription.canceled",
}

// checkOutcome checks what a successful command did, command by command: the billing cycle's
// rules.
func checkOutcome(t *testing.T, where string, s domain.Subscription, c domain.Command, now time.Time, events []domain.Event, after domain.Subscription) {
	t.Helper()
	if len(events) != 1 {
		t.Errorf("%s = %d events, want one", where, len(events))
		return
	}
	e := events[0]
	at := now.UTC().Truncate(time.Second)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s = %#v: %s", where, e, fmt.Sprintf(format, args...))
	}
	switch c := c.(type) {
	case domain.Renew:
		if at.Before(s.PeriodEnd) || !c.PeriodEnd.Equal(s.PeriodEnd) {
			fail("renewed the period ending %s, named %s, at %s", s.PeriodEnd, c.PeriodEnd, at)
		}
		switch e := e.(type) {
		case domain.Canceled:
			trialEnded := s.Status == domain.StatusTrialing && s.PaymentMethod == "" && c.CancelTrialWithoutPaymentMethod
			switch {
			case s.CancelAtPeriodEnd && e.Reason != domain.CancelReasonRequested,
				!s.CancelAtPeriodEnd && (!trialEnded || e.Reason != domain.CancelReasonTrialEnded):
				fail("canceled (%s) with cancel at period end %t, trial ended without payment method %t", e.Reason, s.CancelAtPeriodEnd, trialEnded)
			}
		case domain.Renewed:
			checkRenewed(t, where, s, c, e)
		default:
			fail("a renewal is subscription.renewed or subscription.canceled")
		}
	case domain.NotifyTrialWillEnd:
		e, ok := e.(domain.TrialWillEnd)
		if !ok || s.Status != domain.StatusTrialing || s.TrialWillEndSent || !e.TrialEnd.Equal(s.TrialEnd) ||
			at.Before(s.TrialEnd.Add(-domain.TrialReminder)) {
			fail("trial reminder while %s, sent %t, trial ending %s", s.Status, s.TrialWillEndSent, s.TrialEnd)
		}
	case domain.MarkPastDue:
		if e, ok := e.(domain.PastDue); !ok || s.Status != domain.StatusActive || e.InvoiceID != c.InvoiceID {
			fail("past due from %s; only an active subscription falls past due", s.Status)
		}
	case domain.RecoverPayment:
		if e, ok := e.(domain.PaymentRecovered); !ok || (s.Status != domain.StatusPastDue && s.Status != domain.StatusUnpaid) ||
			e.InvoiceID != c.InvoiceID {
			fail("recovered from %s; only past_due and unpaid recover", s.Status)
		}
	case domain.EndDunning:
		ok := s.Status == domain.StatusPastDue
		switch e := e.(type) {
		case domain.MarkedUnpaid:
			ok = ok && c.MarkUnpaid && e.InvoiceID == c.InvoiceID
		case domain.Canceled:
			ok = ok && !c.MarkUnpaid && e.Reason == domain.CancelReasonNonpayment
		default:
			ok = false
		}
		if !ok {
			fail("ended dunning from %s (mark unpaid %t)", s.Status, c.MarkUnpaid)
		}
	case domain.ChangePaymentMethod:
		if c.PaymentMethod == "" || c.PaymentMethod == s.PaymentMethod || after.PaymentMethod != c.PaymentMethod {
			fail("payment method %q → %q, asked for %q", s.PaymentMethod, after.PaymentMethod, c.PaymentMethod)
		}
	case domain.RecordUpgradeFailed:
		// A record only: the state is the one before, but for its version and time.
		want := cloneSubscription(s)
		want.Version++
		want.UpdatedAt = e.OccurredAt()
		if !reflect.DeepEqual(after, want) || !e.OccurredAt().Equal(later(at, s.UpdatedAt)) {
			fail("recording a failed upgrade changed %s into %s", describeState(s), describeState(after))
		}
	}
}

// checkRenewed: a renewal starts the next period where the last one ended and ends it one
// interval later on the anchor's series (Jan 31 → Feb 28 → Mar 31: the day returns to the
// anchor's), on the plan and seats due then; it invoices that period unless paused.
func checkRenewed(t *testing.T, where string, s domain.Subscription, c domain.Renew, e domain.Renewed) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s renewed %s into %#v: %s", where, describeState(s), e, fmt.Sprintf(format, args...))
	}
	plan, seats, anchor := s.Plan, s.Seats, s.BillingAnchor
	if sc := s.ScheduledChange; sc != nil {
		plan, seats = sc.Plan, sc.Seats
		if plan.Interval != s.Plan.Interval {
			anchor = s.PeriodEnd
		}
	}
	if !reflect.DeepEqual(e.Plan, plan) || e.Seats != seats || !e.BillingAnchor.Equal(anchor) {
		fail("want plan %s × %d anchored at %s", plan.PlanID, seats, anchor)
	}
	if !e.PeriodStart.Equal(s.PeriodEnd) {
		fail("the new period starts at %s, not where the last ended (%s)", e.PeriodStart, s.PeriodEnd)
	}
	// Exactly one step of the anchor's series: the new end is a boundary n, and boundary n-1
	// is at or before the old end.
	n := 1
	for domain.AddInterval(anchor, plan.Interval, n).Before(e.PeriodEnd) {
		n++
	}
	if !domain.AddInterval(anchor, plan.Interval, n).Equal(e.PeriodEnd) || domain.AddInterval(anchor, plan.Interval, n-1).After(s.PeriodEnd) ||
		!e.PeriodEnd.After(s.PeriodEnd) {
		fail("the period end is not the anchor's next boundary after %s", s.PeriodEnd)
	}
	// Periods are in UTC, so a day is 24 hours: a month lasts 28 to 31 of them, a year 365 or 366.
	days := e.PeriodEnd.Sub(e.PeriodStart).Hours() / 24
	if bounds := (map[domain.Interval][2]float64{domain.IntervalMonth: {28, 31}, domain.IntervalYear: {365, 366}})[plan.Interval]; days < bounds[0] || days > bounds[1] {
		fail("a %s lasting %.2f days", plan.Interval, days)
	}
	switch {
	case s.Status == domain.StatusPaused && e.InvoiceID != "":
		fail("a paused period is not billed, but names invoice %q", e.InvoiceID)
	case s.Status != domain.StatusPaused && (e.InvoiceID == "" || e.InvoiceID != c.InvoiceID):
		fail("invoice %q, asked for %q", e.InvoiceID, c.InvoiceID)
	}
}

// checkPaidChange: what goes through an upgrade saga is exactly an immediate change whose
// proration costs money, and its amount is that proration's total.
func checkPaidChange(t *testing.T, where string, events []domain.Event) {
	t.Helper()
	change, amount, paid := domain.PaidChange(events)
	var lines []domain.ProrationLine
	var total int64
	switch e := events[0].(type) {
	case domain.PlanChanged:
		lines = e.Proration
	case domain.SeatsChanged:
		lines = e.Proration
	}
	for _, l := range lines {
		total += l.Amount
	}
	if paid != (len(events) == 1 && total > 0) || (paid && (amount != total || !reflect.DeepEqual(change, events[0]))) {
		t.Errorf("%s: PaidChange(%T…) = %v, %d, %t; the proration totals %d", where, events[0], change, amount, paid, total)
	}
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// checkPersistable: an event survives the JSON round trip of the store unchanged, exactly.
func checkPersistable(t *testing.T, where string, e domain.Event) {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("%s: %s does not encode: %v", where, e.EventType(), err)
	}
	back, err := domain.DecodeEvent(e.EventType(), data)
	if err != nil {
		t.Fatalf("%s: %s encoded as %s does not decode: %v", where, e.EventType(), data, err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("%s: %s changes in the JSON round trip:\n %#v\n %#v", where, e.EventType(), e, back)
	}
}

// checkProration: a credit is never positive, a charge never negative, neither exceeds a full
// period of the seats, and both cover what remains of the period from now.
func checkProration(t *testing.T, where string, e domain.Event, s domain.Subscription) {
	t.Helper()
	var lines []domain.ProrationLine
	switch e := e.(type) {
	case domain.PlanChanged:
		lines = e.Proration
	case domain.SeatsChanged:
		lines = e.Proration
	default:
		return
	}
	if len(lines) != 0 && len(lines) != 2 {
		t.Fatalf("%s: %d proration lines, want none or a credit and a charge", where, len(lines))
	}
	if len(lines) > 0 && s.Status != domain.StatusActive {
		t.Errorf("%s: proration while %s; only a paid (active) period prorates", where, s.Status)
	}
	for i, l := range lines {
		full := l.UnitAmount * l.Quantity // at most MaxUnitAmount × MaxSeats: no overflow
		switch {
		case !validSeats(l.Quantity) || l.UnitAmount < 0 || l.UnitAmount > domain.MaxUnitAmount:
			t.Errorf("%s: line %d has quantity %d, unit amount %d", where, i, l.Quantity, l.UnitAmount)
		case i == 0 && (l.Amount > 0 || -l.Amount > full):
			t.Errorf("%s: credit line amount %d outside [-%d, 0]", where, l.Amount, full)
		case i == 1 && (l.Amount < 0 || l.Amount > full):
			t.Errorf("%s: charge line amount %d outside [0, %d]", where, l.Amount, full)
		case !l.PeriodStart.Equal(e.OccurredAt()) || !l.PeriodStart.Before(l.PeriodEnd):
			t.Errorf("%s: line %d covers [%s, %s), want from %s to a later period end", where, i, l.PeriodStart, l.PeriodEnd, e.OccurredAt())
		case !l.Proration:
			t.Errorf("%s: line %d is not marked as a proration", where, i)
		}
	}
}

// checkTransition: Evolve counts the event, and time never runs backwards.
func checkTransition(t *testing.T, where string, from, to domain.Subscription, e domain.Event) {
	t.Helper()
	if to.Version != from.Version+1 {
		t.Errorf("%s: %s took version %d to %d", where, e.EventType(), from.Version, to.Version)
	}
	if to.UpdatedAt.Before(from.UpdatedAt) {
		t.Errorf("%s: %s moved updated_at back from %s to %s", where, e.EventType(), from.UpdatedAt, to.UpdatedAt)
	}
	if _, record := e.(domain.UpgradeFailed); from.Status == domain.StatusCanceled && !record {
		t.Errorf("%s: %s followed a cancellation", where, e.EventType())
	}
	if from.Exists() && from.Status != to.Status {
		if want, ok := statusMoves[[2]domain.Status{from.Status, to.Status}]; !ok || want != e.EventType() {
			t.Errorf("%s: %s moved the status from %s to %s, which only %q may", where, e.EventType(), from.Status, to.Status, want)
		}
	}
}

// checkInvariants are what every state folded from decided events satisfies.
func checkInvariants(t *testing.T, where string, s domain.Subscription) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: invariant broken in %s: %s", where, describeState(s), fmt.Sprintf(format, args...))
	}
	if !s.Exists() {
		fail("a successful command left no subscription")
		return
	}
	if !validSeats(s.Seats) {
		fail("seats %d outside 1..%d", s.Seats, domain.MaxSeats)
	}
	if !s.PeriodStart.Before(s.PeriodEnd) {
		fail("period start %s is not before its end %s", s.PeriodStart, s.PeriodEnd)
	}
	if s.BillingAnchor.IsZero() || s.BillingAnchor.After(s.PeriodEnd) {
		fail("billing anchor %s outside the first period's end %s", s.BillingAnchor, s.PeriodEnd)
	}
	if s.UpdatedAt.Before(s.CreatedAt) {
		fail("updated %s before created %s", s.UpdatedAt, s.CreatedAt)
	}
	if !s.Plan.Interval.Valid() || s.Plan.UnitAmount < 0 || s.Plan.UnitAmount > domain.MaxUnitAmount || s.Plan.Currency == "" {
		fail("plan terms %+v", s.Plan)
	}
	if m := s.MRR(); m < 0 || (m != 0 && s.Status != domain.StatusActive && s.Status != domain.StatusPastDue) {
		fail("MRR %d while %s", m, s.Status)
	}
	switch s.Status {
	case domain.StatusTrialing:
		if s.TrialEnd.IsZero() || !s.TrialEnd.Equal(s.PeriodEnd) {
			fail("trialing with trial end %s, period end %s", s.TrialEnd, s.PeriodEnd)
		}
	case domain.StatusActive, domain.StatusPastDue, domain.StatusPaused, domain.StatusCanceled, domain.StatusUnpaid:
	default:
		fail("unknown status %q", s.Status)
	}
	if (s.Status == domain.StatusCanceled) != !s.CanceledAt.IsZero() {
		fail("status %s with canceled_at %s", s.Status, s.CanceledAt)
	}
	if (s.Status == domain.StatusPaused) != !s.PausedAt.IsZero() {
		fail("status %s with paused_at %s", s.Status, s.PausedAt)
	}
	if s.TrialWillEndSent && s.TrialEnd.IsZero() {
		fail("a trial reminder without a trial")
	}
	if s.CancelAtPeriodEnd && s.Status == domain.StatusCanceled {
		fail("canceled with a cancellation still scheduled")
	}
	if c := s.ScheduledChange; c != nil {
		if s.Status == domain.StatusCanceled || s.CancelAtPeriodEnd {
			fail("a plan change scheduled while %s (cancel at period end: %t)", s.Status, s.CancelAtPeriodEnd)
		}
		if !validSeats(c.Seats) || !c.EffectiveAt.Equal(s.PeriodEnd) || !c.Plan.Interval.Valid() {
			fail("scheduled change %+v (period end %s)", *c, s.PeriodEnd)
		}
	}
}

// validSeats is the seat rule, restated here rather than calling domain.ValidateSeats, so that
// a regression in it is caught rather than shared.
func validSeats(n int64) bool { return n >= 1 && n <= domain.MaxSeats }

func cloneSubscription(s domain.Subscription) domain.Subscription {
	s.Plan.Features = slices.Clone(s.Plan.Features)
	if s.ScheduledChange != nil {
		c := *s.ScheduledChange
		c.Plan.Features = slices.Clone(c.Plan.Features)
		s.ScheduledChange = &c
	}
	return s
}

func describeState(s domain.Subscription) string {
	if !s.Exists() {
		return "{no subscription}"
	}
	return fmt.Sprintf("{v%d %s %s×%d period [%s, %s) updated %s cancel_at_end=%t scheduled=%v}",
		s.Version, s.Status, s.Plan.PlanID, s.Seats, s.PeriodStart.Format(time.RFC3339), s.PeriodEnd.Format(time.RFC3339),
		s.UpdatedAt.Format(time.RFC3339), s.CancelAtPeriodEnd, s.ScheduledChange != nil)
}

// decideSeeds are programs that walk through the interesting paths. A program is a byte
// choosing the start time (decideBases), then steps: a kind byte (kindCreate …), the command's
// field bytes as programReader reads them, and how far the time moves before it is decided
// (see advance).
func decideSeeds() []fuzzcorpus.Seed {
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	b := func(bytes ...byte) []byte { return bytes }
	// Field encodings. Plans index fuzzPlans: 0 starter_monthly, 1 pro_monthly,
	// 2 business_monthly, 3 starter_yearly, 6 pro_monthly_eur, 7 max_yearly, 8 max_monthly,
	// 9 free, 12 the zero Plan, 13 weekly.
	seats := func(n byte) []byte { return b(7, n-1) } // 1..10 seats
	const (
		seatsZero, seatsOne, seatsMinusOne, seatsMax, seatsOverMax, seatsMinInt, seatsMaxInt = 0, 1, 2, 3, 4, 5, 6
	)
	trialDefault, noTrial, trialMax, trialOverMax, trialMinusOne := b(0), b(1), b(3), b(4), b(5)
	days := func(n byte) []byte { return b(7, n) }
	create := func(plan byte, seats, trial []byte, variant byte) []byte {
		return cat(b(kindCreate, plan), seats, trial, b(variant))
	}
	changePlan := func(plan, timing byte, seats []byte) []byte { // timing: 0 default, 1 immediate, 2 period_end, 3-4 invalid
		if seats == nil {
			return b(kindChangePlan, plan, timing, 0)
		}
		return cat(b(kindChangePlan, plan, timing, 1), seats)
	}
	changeSeats := func(seats []byte) []byte { return cat(b(kindChangeSeats), seats) }
	cancel := func(atPeriodEnd byte) []byte { return b(kindCancel, atPeriodEnd) }
	const (
		stay, plusSecond, minusSecond, plusHalfSecond, plusDay, plusMonth, plusYear = 0, 1, 2, 3, 4, 5, 6
	)
	seconds := func(n int32) []byte {
		return b(7, 0, 0, 0, 0, byte(uint32(n)>>24), byte(uint32(n)>>16), byte(uint32(n)>>8), byte(n))
	}
	active := create(1, seats(2), noTrial, 0)
	// The billing cycle. Ids: 0 prefix_1, 1 prefix_2, 2 "", 3 blank, 4 NUL, 5 injection, 6 long.
	// Period ends a renewal names: 0 the current, 1 the current in another zone, 2 a second
	// before, 3 a second after, 4 the previous, 5 the next, 6 the zero time, 7 year 9999.
	const (
		toPeriodEnd, toTrialReminder                           = 8, 9
		id1, id2, idEmpty, idBlank, idNUL, idInjection, idLong = 0, 1, 2, 3, 4, 5, 6
		withPaymentMethod                                      = 4 // Create's variant byte
	)
	renew := func(periodEnd, invoice, cancelTrial byte) []byte {
		return b(kindRenew, periodEnd, invoice, cancelTrial)
	}
	notify := b(kindNotifyTrialWillEnd)
	pastDue := func(invoice byte) []byte { return b(kindMarkPastDue, invoice) }
	recoverPayment := func(invoice byte) []byte { return b(kindRecoverPayment, invoice) }
	endDunning := func(invoice, markUnpaid byte) []byte { return b(kindEndDunning, invoice, markUnpaid) }
	changePM := func(pm byte) []byte { return b(kindChangePaymentMethod, pm) }
	upgradeFailed := func(id, plan byte, seats []byte, reason, decline byte) []byte {
		return cat(b(kindRecordUpgradeFailed, id, plan), seats, b(reason, decline))
	}

	return []fuzzcorpus.Seed{
		fuzzcorpus.S("empty", b()),
		fuzzcorpus.S("not-a-command", b(0, kindNil, stay)),
		fuzzcorpus.S("commands-before-create", cat(b(0), b(kindPause, stay), changeSeats(seats(3)), b(stay), b(kindResume, stay))),
		fuzzcorpus.S("create-active", cat(b(0), active, b(stay))),
		fuzzcorpus.S("create-with-default-trial", cat(b(0), create(2, seats(1), trialDefault, 0), b(stay))),
		fuzzcorpus.S("create-twice", cat(b(0), active, b(plusSecond), create(2, seats(1), noTrial, 0), b(plusSecond))),
		fuzzcorpus.S("create-invalid-fields", cat(b(0),
			create(12, b(seatsOne), noTrial, 0), b(stay),
			create(13, b(seatsZero), trialOverMax, 0), b(stay),
			create(1, b(seatsOverMax), trialMinusOne, 1), b(stay),
			create(1, b(seatsMinInt), b(6), 2), b(stay),
			create(1, b(seatsMaxInt), noTrial, 3), b(stay),
			create(1, b(seatsMinusOne), noTrial, 0), b(stay),
			create(1, b(seatsZero), noTrial, 0), b(stay))),
		fuzzcorpus.S("upgrade-downgrade-interval-change", cat(b(0), active,
			b(plusDay), changePlan(2, 0, seats(4)), b(plusDay), // upgrade now, prorated
			changePlan(0, 0, nil), b(plusDay), // downgrade: waits for the period end
			changePlan(0, 0, nil), b(plusDay), // the same again: no change
			changePlan(3, 1, nil), b(plusDay), // to yearly, now: a new period
			changePlan(6, 0, nil), b(plusDay), // EUR: currency mismatch
			changePlan(3, 0, nil), b(plusDay))), // the same plan and seats: no change
		fuzzcorpus.S("seats-extremes", cat(b(3), create(7, b(seatsMax), noTrial, 0), b(plusSecond),
			changeSeats(b(seatsZero)), b(plusSecond), changeSeats(b(seatsMinusOne)), b(plusSecond),
			changeSeats(b(seatsOne)), b(plusHalfSecond), changeSeats(b(seatsMax)), b(plusSecond),
			changeSeats(b(seatsOverMax)), b(plusSecond), changeSeats(b(seatsMinInt)), b(plusSecond),
			changeSeats(b(seatsMaxInt)), b(plusSecond), changeSeats(b(8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40)), b(plusSecond))),
		fuzzcorpus.S("trial-then-changes", cat(b(1), create(2, seats(1), trialMax, 0), b(plusDay),
			changePlan(8, 1, seats(3)), b(plusDay), changeSeats(seats(9)), b(plusDay),
			b(kindPause), b(plusSecond), cancel(1), b(plusSecond), changePlan(2, 2, nil), b(plusSecond))),
		fuzzcorpus.S("cancel-undo-pause-resume", cat(b(0), create(0, seats(5), noTrial, 0), b(stay),
			cancel(1), b(plusSecond), cancel(1), b(plusSecond), b(kindUndoCancel), b(plusSecond),
			b(kindUndoCancel), b(plusSecond), b(kindPause), b(plusSecond), b(kindPause), b(plusSecond),
			changeSeats(seats(6)), b(plusSecond), b(kindResume), b(plusSecond), cancel(0), b(plusSecond),
			b(kindResume), b(plusSecond), changePlan(2, 0, nil), b(plusSecond))),
		fuzzcorpus.S("time-runs-backwards", cat(b(0), active, b(plusHalfSecond), changeSeats(seats(7)), b(minusSecond),
			b(kindPause), b(minusSecond), b(kindPause), b(plusSecond))),
		fuzzcorpus.S("period-ended", cat(b(4), active, b(stay),
			changeSeats(seats(7)), b(plusMonth), changePlan(2, 0, nil), b(stay), cancel(1), b(stay),
			b(kindUndoCancel), b(stay), changePlan(2, 2, nil), b(stay), cancel(0), b(stay))),
		fuzzcorpus.S("yearly-leap-day", cat(b(1), create(7, seats(2), noTrial, 0), b(plusYear),
			changePlan(8, 1, nil), b(plusSecond), changeSeats(b(seatsMax)), b(plusSecond))),
		fuzzcorpus.S("big-time-jumps", cat(b(2), create(9, seats(1), days(200), 0), seconds(1<<31-1),
			changeSeats(seats(2)), seconds(-1<<31), b(kindPause), seconds(86400*365*50), cancel(0), b(stay))),
		fuzzcorpus.S("invalid-timings", cat(b(0), active, b(plusSecond), changePlan(2, 3, nil), b(plusSecond),
			changePlan(2, 4, seats(1)), b(plusSecond))),
		fuzzcorpus.S("other-zone-and-fraction", cat(b(3), create(8, seats(10), days(30), 0), b(plusHalfSecond),
			changePlan(7, 2, nil), b(plusHalfSecond), cancel(1), b(plusHalfSecond))),
		fuzzcorpus.S("renewals-from-a-month-end", cat(b(0), active, b(stay),
			renew(0, id1, 0), b(minusSecond), // not due yet
			renew(0, id1, 0), b(toPeriodEnd), // Jan 31 → Feb 28
			renew(4, id1, 0), b(stay), // the previous period: already renewed
			renew(1, id2, 0), b(toPeriodEnd), // Feb 28 → Mar 31, named in another zone
			renew(2, id1, 0), b(toPeriodEnd), renew(3, id1, 0), b(stay), renew(5, id1, 0), b(stay),
			renew(6, id1, 0), b(stay), renew(7, id1, 0), b(stay),
			renew(0, id1, 0), b(plusYear), // a year late: renews one period only
			renew(0, id2, 0), b(stay))),
		// Regression: a billed renewal without an invoice id was refused with a bare
		// errors.New, none of the domain's errors (now ErrInvoiceIDRequired).
		fuzzcorpus.S("renew-without-invoice-id", cat(b(0), active, b(stay),
			renew(0, idEmpty, 0), b(toPeriodEnd), renew(0, idBlank, 0), b(stay), renew(0, idNUL, 0), b(stay))),
		fuzzcorpus.S("trial-converts-without-payment-method", cat(b(0), create(0, seats(1), days(3), 0), b(stay),
			renew(0, idEmpty, 0), b(toPeriodEnd), renew(0, id1, 0), b(stay), pastDue(id1), b(plusSecond))),
		fuzzcorpus.S("renew-while-paused", cat(b(4), active, b(stay), b(kindPause), b(plusDay),
			renew(0, idEmpty, 0), b(toPeriodEnd), renew(0, id1, 0), b(toPeriodEnd), b(kindResume), b(plusSecond),
			renew(0, id2, 0), b(toPeriodEnd))),
		fuzzcorpus.S("trial-reminder-and-conversion", cat(b(0), create(2, seats(3), trialDefault, withPaymentMethod), b(stay),
			notify, b(plusDay), notify, b(toTrialReminder), notify, b(plusSecond),
			renew(0, id1, 1), b(toPeriodEnd), notify, b(plusSecond))),
		fuzzcorpus.S("trial-ends-without-payment-method", cat(b(1), create(0, seats(1), trialDefault, 0), b(stay),
			renew(0, id1, 1), b(toPeriodEnd), renew(0, id1, 1), b(stay), changePM(id1), b(plusSecond),
			upgradeFailed(id1, 1, seats(2), id1, id1), b(minusSecond))),
		fuzzcorpus.S("dunning-cancels", cat(b(0), active, b(stay), renew(0, id1, 0), b(toPeriodEnd),
			recoverPayment(id1), b(plusSecond), endDunning(id1, 0), b(plusSecond),
			pastDue(id1), b(plusSecond), pastDue(id1), b(plusSecond), b(kindPause), b(plusSecond),
			changePlan(2, 1, nil), b(plusSecond), recoverPayment(id1), b(plusDay),
			pastDue(id2), b(plusDay), renew(0, id2, 0), b(toPeriodEnd), endDunning(id2, 0), b(plusDay),
			upgradeFailed(id1, 2, seats(1), id1, id1), b(stay), upgradeFailed(idEmpty, 12, b(seatsMinInt), idEmpty, idEmpty), b(minusSecond),
			recoverPayment(id2), b(plusSecond), changePM(id2), b(plusSecond))),
		fuzzcorpus.S("dunning-marks-unpaid", cat(b(0), active, b(stay), pastDue(idEmpty), b(plusDay),
			endDunning(id1, 1), b(plusDay), endDunning(id1, 1), b(plusDay), renew(0, id1, 0), b(toPeriodEnd),
			changeSeats(seats(3)), b(plusSecond), b(kindPause), b(plusSecond), b(kindUndoCancel), b(plusSecond),
			pastDue(id1), b(plusSecond), cancel(1), b(plusSecond), changePM(id2), b(plusSecond),
			recoverPayment(id1), b(plusSecond), renew(0, id1, 0), b(toPeriodEnd), cancel(0), b(plusSecond))),
		fuzzcorpus.S("scheduled-change-at-renewal", cat(b(0), active, b(stay), changePlan(3, 0, nil), b(plusDay),
			renew(0, id1, 0), b(toPeriodEnd), changePlan(0, 2, nil), b(plusDay), renew(0, id1, 0), b(toPeriodEnd))),
		fuzzcorpus.S("cancel-at-renewal", cat(b(0), active, b(stay), cancel(1), b(plusDay),
			renew(0, id1, 0), b(toPeriodEnd), renew(0, id1, 0), b(stay))),
		fuzzcorpus.S("yearly-leap-day-renewals", cat(b(1), create(7, seats(2), noTrial, 0), b(stay),
			renew(0, id1, 0), b(toPeriodEnd), renew(0, id1, 0), b(toPeriodEnd), renew(0, id1, 0), b(toPeriodEnd),
			renew(0, id1, 0), b(toPeriodEnd))),
		fuzzcorpus.S("hostile-ids", cat(b(0), active, b(stay),
			changePM(idEmpty), b(plusSecond), changePM(idBlank), b(plusSecond), changePM(idNUL), b(plusSecond),
			changePM(idInjection), b(plusSecond), changePM(idLong), b(plusSecond), changePM(idLong), b(plusSecond),
			pastDue(idLong), b(plusSecond), recoverPayment(idNUL), b(plusSecond), pastDue(idInjection), b(plusSecond),
			endDunning(idBlank, 1), b(plusSecond), upgradeFailed(idLong, 13, b(seatsMaxInt), idInjection, idNUL), b(seconds(-1<<31)...))),
	}
}
