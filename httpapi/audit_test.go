package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

// auditEvent is an event as the audit routes return it (the global log adds the stream fields).
type auditEvent struct {
	Version       int64           `json:"version"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	OccurredAt    time.Time       `json:"occurred_at"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Data          json.RawMessage `json:"data"`
	Metadata      struct {
		CorrelationID  *string `json:"correlation_id"`
		CausationID    *string `json:"causation_id"`
		Actor          *string `json:"actor"`
		Source         *string `json:"source"`
		IdempotencyKey *string `json:"idempotency_key"`
	} `json:"metadata"`
	StreamID       string `json:"stream_id"`
	StreamType     string `json:"stream_type"`
	GlobalPosition int64  `json:"global_position"`
}

type eventPage struct {
	Data             []auditEvent `json:"data"`
	HasMore          bool         `json:"has_more"`
	NextAfterVersion *int64       `json:"next_after_version"`
}

type globalPage struct {
	Data              []auditEvent `json:"data"`
	HasMore           bool         `json:"has_more"`
	NextAfterPosition int64        `json:"next_after_position"`
}

type replay struct {
	AsOf         time.Time    `json:"as_of"`
	Version      int64        `json:"version"`
	Subscription subscription `json:"subscription"`
	Events       []auditEvent `json:"events"`
}

type diff struct {
	From struct {
		Version int64     `json:"version"`
		AsOf    time.Time `json:"as_of"`
	} `json:"from"`
	To struct {
		Version int64     `json:"version"`
		AsOf    time.Time `json:"as_of"`
	} `json:"to"`
	Changes []struct {
		Field string          `json:"field"`
		From  json.RawMessage `json:"from"`
		To    json.RawMessage `json:"to"`
	} `json:"changes"`
	Events []auditEvent `json:"events"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// sameJSON reports whether two JSON documents hold the same value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// checkEvent compares an audit event with the stored one.
func checkEvent(t *testing.T, got auditEvent, want eventstore.Event) {
	t.Helper()
	de, err := eventstore.DecodeEvent(want)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(de)
	m := want.Metadata
	if got.Version != want.Version || got.EventID != want.ID.String() || got.Type != want.Type ||
		got.SchemaVersion != want.SchemaVersion || !got.OccurredAt.Equal(want.OccurredAt) ||
		!got.RecordedAt.Equal(want.RecordedAt) || !sameJSON(t, got.Data, data) ||
		str(got.Metadata.CorrelationID) != m.CorrelationID || str(got.Metadata.CausationID) != m.CausationID ||
		str(got.Metadata.Actor) != m.Actor || str(got.Metadata.Source) != m.Source ||
		str(got.Metadata.IdempotencyKey) != m.IdempotencyKey {
		t.Errorf("event %d = %+v (data %s)\nwant %+v (data %s)", want.Version, got, got.Data, want, data)
	}
}

// view is the part of a subscription the point-in-time checks compare.
type view struct {
	Status            string
	PlanID            string
	Seats             int64
	UnitAmount        int64
	MRR               int64
	PeriodStart       time.Time
	PeriodEnd         time.Time
	CancelAtPeriodEnd bool
	Version           int64
}

func viewOf(s subscription) view {
	return view{s.Status, s.PlanID, s.Seats, s.UnitAmount, s.MRR, s.CurrentPeriodStart.UTC(), s.CurrentPeriodEnd.UTC(), s.CancelAtPeriodEnd, s.Version}
}

// foldView folds the first n stored events with domain.Evolve, independently of the API.
func foldView(t *testing.T, events []eventstore.Event, n int) (view, domain.Subscription) {
	t.Helper()
	var s domain.Subscription
	for _, e := range events[:n] {
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		s = domain.Evolve(s, de)
	}
	return view{string(s.Status), s.Plan.PlanID, s.Seats, s.Plan.UnitAmount, s.MRR(), s.PeriodStart.UTC(), s.PeriodEnd.UTC(),
		s.CancelAtPeriodEnd, s.Version}, s
}

// fieldsOf renders every top-level field of the Subscription JSON from a folded state, as
// comparable strings, in the schema's order.
func fieldsOf(s domain.Subscription) ([]string, map[string]string) {
	opt := func(t time.Time) string {
		if t.IsZero() {
			return "null"
		}
		return t.UTC().String()
	}
	sched := "null"
	if c := s.ScheduledChange; c != nil {
		sched = fmt.Sprint(c.Plan.PlanID, c.Seats, c.Plan.UnitAmount, c.EffectiveAt.UTC())
	}
	names := []string{"id", "customer_id", "plan_id", "status", "seats", "currency", "unit_amount", "interval", "mrr",
		"features", "current_period_start", "current_period_end", "trial_end", "cancel_at_period_end", "canceled_at",
		"paused_at", "scheduled_change", "version", "created_at", "updated_at"}
	values := map[string]string{
		"id": s.ID, "customer_id": s.CustomerID, "plan_id": s.Plan.PlanID, "status": string(s.Status),
		"seats": fmt.Sprint(s.Seats), "currency": s.Plan.Currency, "unit_amount": fmt.Sprint(s.Plan.UnitAmount),
		"interval": string(s.Plan.Interval), "mrr": fmt.Sprint(s.MRR()), "features": fmt.Sprint(s.Plan.Features),
		"current_period_start": opt(s.PeriodStart), "current_period_end": opt(s.PeriodEnd), "trial_end": opt(s.TrialEnd),
		"cancel_at_period_end": fmt.Sprint(s.CancelAtPeriodEnd), "canceled_at": opt(s.CanceledAt),
		"paused_at": opt(s.PausedAt), "scheduled_change": sched, "version": fmt.Sprint(s.Version),
		"created_at": opt(s.CreatedAt), "updated_at": opt(s.UpdatedAt),
	}
	return names, values
}

func TestSubscriptionAuditTrail(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	read := withKey(api.keys["read"])

	// A history at distinct times, a day apart.
	times := []time.Time{testStart}
	var s subscription
	api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_audit", "plan_id": "pro_monthly", "seats": 2, "trial_days": 0, "payment_method": "pm_card_ok"},
		withHeader("Idempotency-Key", "audit-create")).decode(t, &s)
	path := "/v1/subscriptions/" + s.ID
	steps := []struct {
		path string
		body any
	}{
		{"/seats", map[string]any{"seats": 3}},
		{"/change-plan", map[string]any{"plan_id": "business_monthly"}},
		{"/cancel", map[string]any{"at_period_end": true}},
		{"/undo-cancel", nil},
		{"/change-plan", map[string]any{"plan_id": "starter_monthly"}}, // a downgrade: scheduled
	}
	for i, step := range steps {
		at := testStart.Add(time.Duration(i+1)*24*time.Hour + time.Duration(i)*time.Hour)
		api.setClock(at)
		times = append(times, at)
		api.must(http.StatusOK, "POST", path+step.path, step.body)
	}
	stored, err := eventstore.Load(context.Background(), api.db, uuid.MustParse(s.ID), eventstore.LoadOptions{})
	if err != nil || len(stored) != len(times) {
		t.Fatalf("stored events = %d, %v; want %d", len(stored), err, len(times))
	}
	for i, e := range stored {
		if !e.OccurredAt.Equal(times[i]) {
			t.Fatalf("event %d occurred at %s, want %s", i+1, e.OccurredAt, times[i])
		}
	}

	// The history equals the store, with who and why.
	var all eventPage
	api.must(http.StatusOK, "GET", path+"/events", nil, read).decode(t, &all)
	if len(all.Data) != len(stored) || all.HasMore || all.NextAfterVersion != nil {
		t.Fatalf("history = %d events, has_more %v; want %d, false", len(all.Data), all.HasMore, len(stored))
	}
	for i := range stored {
		checkEvent(t, all.Data[i], stored[i])
		if str(all.Data[i].Metadata.Actor) != api.names["write"] {
			t.Errorf("event %d actor %q, want %q", i+1, str(all.Data[i].Metadata.Actor), api.names["write"])
		}
	}
	if got := str(all.Data[0].Metadata.IdempotencyKey); got != "audit-create" {
		t.Errorf("creation idempotency key %q", got)
	}
	if all.Data[1].Metadata.IdempotencyKey != nil {
		t.Errorf("event 2 idempotency key %q, want null", *all.Data[1].Metadata.IdempotencyKey)
	}

	// Pages of 4, then 2, cover everything once.
	var paged []auditEvent
	after, pages := int64(0), 0
	for {
		var p eventPage
		api.must(http.StatusOK, "GET", fmt.Sprintf("%s/events?after_version=%d&limit=4", path, after), nil, read).decode(t, &p)
		paged = append(paged, p.Data...)
		pages++
		if !p.HasMore {
			if p.NextAfterVersion != nil {
				t.Errorf("last page has next_after_version %d", *p.NextAfterVersion)
			}
			break
		}
		if p.NextAfterVersion == nil || pages > 5 {
			t.Fatalf("page %d: %+v", pages, p)
		}
		after = *p.NextAfterVersion
	}
	if pages != 2 || len(paged) != len(stored) {
		t.Fatalf("%d pages, %d events; want 2 pages, %d events", pages, len(paged), len(stored))
	}
	for i := range stored {
		checkEvent(t, paged[i], stored[i])
	}
	var empty eventPage
	api.must(http.StatusOK, "GET", path+"/events?after_version=99", nil, read).decode(t, &empty)
	if len(empty.Data) != 0 || empty.HasMore {
		t.Errorf("after the head: %+v", empty)
	}

	// Point in time: on each event's timestamp, between events and by version, against an
	// independent fold.
	for i := range stored {
		want, _ := foldView(t, stored, i+1)
		for _, q := range []string{
			"as_of=" + times[i].Format(time.RFC3339),
			"as_of=" + times[i].Add(time.Second).Format(time.RFC3339),
			fmt.Sprintf("version=%d", i+1),
		} {
			var got replay
			api.must(http.StatusOK, "GET", path+"/replay?"+q, nil, read).decode(t, &got)
			if v := viewOf(got.Subscription); v != want {
				t.Errorf("replay %s = %+v\nwant %+v", q, v, want)
			}
			if got.Version != int64(i+1) || len(got.Events) != i+1 {
				t.Errorf("replay %s: version %d, %d events; want %d", q, got.Version, len(got.Events), i+1)
			}
			for j := range got.Events {
				checkEvent(t, got.Events[j], stored[j])
			}
			if strings.HasPrefix(q, "version=") && !got.AsOf.Equal(times[i]) {
				t.Errorf("replay %s: as_of %s, want %s", q, got.AsOf, times[i])
			}
		}
	}
	r := api.do("GET", path+"/replay?as_of="+testStart.Add(-time.Second).Format(time.RFC3339), nil, read)
	if r.status != http.StatusNotFound || r.problem(t).Type != "/problems/not-yet-existing" {
		t.Errorf("before creation: %d %s", r.status, r.body)
	}
	r = api.do("GET", "/v1/subscriptions/"+uuid.NewString()+"/replay?version=1", nil, read)
	if r.status != http.StatusNotFound || r.problem(t).Type != "/problems/not-found" {
		t.Errorf("unknown subscription: %d %s", r.status, r.body)
	}
	for q, pointer := range map[string]string{
		fmt.Sprintf("version=%d", len(stored)+1): "version",
		"version=0":                              "version",
		"":                                       "as_of",
		"as_of=2026-02-01T00:00:00Z&version=1":   "version",
	} {
		r := api.do("GET", path+"/replay?"+q, nil, read)
		if r.status != http.StatusUnprocessableEntity {
			t.Errorf("replay ?%s: %d %s, want 422", q, r.status, r.body)
			continue
		}
		if p := r.problem(t); len(p.Errors) != 1 || p.Errors[0].Pointer != pointer {
			t.Errorf("replay ?%s: errors %+v, want pointer %s", q, p.Errors, pointer)
		}
	}
	for _, q := range []string{"as_of=yesterday", "version=two", "at=2026-01-01T00:00:00Z"} {
		if r := api.do("GET", path+"/replay?"+q, nil, read); r.status != http.StatusBadRequest || r.problem(t).Type != "/problems/invalid-parameter" {
			t.Errorf("replay ?%s: %d %s, want 400 invalid-parameter", q, r.status, r.body)
		}
	}

	// Diffs: exactly the fields that differ in the fold, and the events in between.
	for _, pair := range [][2]int{{1, 2}, {2, 3}, {2, 5}, {3, 4}, {4, 5}, {1, 6}, {5, 6}} {
		a, b := pair[0], pair[1]
		_, fromState := foldView(t, stored, a)
		_, toState := foldView(t, stored, b)
		names, fromFields := fieldsOf(fromState)
		_, toFields := fieldsOf(toState)
		var want []string
		for _, name := range names {
			if fromFields[name] != toFields[name] {
				want = append(want, name)
			}
		}
		var toReplay map[string]json.RawMessage
		api.must(http.StatusOK, "GET", fmt.Sprintf("%s/replay?version=%d", path, b), nil, read).decode(t, &struct {
			Subscription *map[string]json.RawMessage `json:"subscription"`
		}{&toReplay})
		for _, q := range []string{
			fmt.Sprintf("from_version=%d&to_version=%d", a, b),
			"from=" + times[a-1].Format(time.RFC3339) + "&to=" + times[b-1].Add(time.Second).Format(time.RFC3339),
		} {
			var d diff
			api.must(http.StatusOK, "GET", path+"/diff?"+q, nil, read).decode(t, &d)
			var got []string
			for _, c := range d.Changes {
				got = append(got, c.Field)
				if !sameJSON(t, c.To, toReplay[c.Field]) || sameJSON(t, c.From, c.To) {
					t.Errorf("diff %s: change %s %s → %s, want → %s", q, c.Field, c.From, c.To, toReplay[c.Field])
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("diff %s: changed %v, want %v", q, got, want)
			}
			if d.From.Version != int64(a) || d.To.Version != int64(b) || len(d.Events) != b-a {
				t.Errorf("diff %s: from %d to %d with %d events; want %d to %d with %d", q, d.From.Version, d.To.Version, len(d.Events), a, b, b-a)
				continue
			}
			for j, e := range d.Events {
				checkEvent(t, e, stored[a+j])
			}
		}
	}
	for _, q := range []string{"from_version=3&to_version=3", "from_version=1", "from_version=1&to=2026-03-01T00:00:00Z", "",
		fmt.Sprintf("from_version=1&to_version=%d", len(stored)+1)} {
		if r := api.do("GET", path+"/diff?"+q, nil, read); r.status != http.StatusUnprocessableEntity {
			t.Errorf("diff ?%s: %d %s, want 422", q, r.status, r.body)
		}
	}
	r = api.do("GET", path+"/diff?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z", nil, read)
	if r.status != http.StatusNotFound || r.problem(t).Type != "/problems/not-yet-existing" {
		t.Errorf("diff from before creation: %d %s", r.status, r.body)
	}

	// Unknown subscriptions and bad parameters.
	r = api.do("GET", "/v1/subscriptions/"+uuid.NewString()+"/events", nil, read)
	if r.status != http.StatusNotFound || r.problem(t).Type != "/problems/not-found" {
		t.Errorf("events of an unknown subscription: %d %s", r.status, r.body)
	}
	if r := api.do("GET", path+"/events?limit=0", nil, read); r.status != http.StatusUnprocessableEntity {
		t.Errorf("limit=0: %d %s", r.status, r.body)
	}
	if r := api.do("GET", path+"/events?after_version=x", nil, read); r.status != http.StatusBadRequest {
		t.Errorf("after_version=x: %d %s", r.status, r.body)
	}
}

func TestGlobalEventLog(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	read := withKey(api.keys["read"])

	// Several subscriptions, their commands interleaved.
	var ids []string
	for range 3 {
		ids = append(ids, api.create("pro_monthly", 1).ID)
	}
	for round := range 3 {
		api.setClock(testStart.Add(time.Duration(round+1) * time.Hour))
		for i, id := range ids {
			api.must(http.StatusOK, "POST", "/v1/subscriptions/"+id+"/seats", map[string]any{"seats": 2 + round + i})
		}
	}
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+ids[1]+"/cancel", map[string]any{"at_period_end": true})

	total := api.eventCount()
	want := testenv.WholeLog(t, api.db)
	subscriptionEvents := 0
	for _, e := range want {
		if e.StreamType == eventstore.SubscriptionStream {
			subscriptionEvents++
		}
	}
	// 13 subscription events, and the invoices, customer series and upgrade sagas they caused.
	if len(want) != total || subscriptionEvents != 13 {
		t.Fatalf("ReadAll sees %d of %d events, %d of them of subscriptions; want 13", len(want), total, subscriptionEvents)
	}

	page := func(query string) []auditEvent {
		t.Helper()
		var got []auditEvent
		after := int64(0)
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("paging %s does not end", query)
			}
			var p globalPage
			api.must(http.StatusOK, "GET", fmt.Sprintf("/v1/events?after_position=%d&%s", after, query), nil, read).decode(t, &p)
			got = append(got, p.Data...)
			if !p.HasMore {
				return got
			}
			after = p.NextAfterPosition
		}
	}
	check := func(query string, got []auditEvent, want []eventstore.Event) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", query, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if g.GlobalPosition != w.Position.GlobalPosition || g.StreamID != w.StreamID.String() || g.StreamType != w.StreamType {
				t.Errorf("%s: event %d at %d of %s, want %d of %s", query, i, g.GlobalPosition, g.StreamID, w.Position.GlobalPosition, w.StreamID)
			}
			checkEvent(t, g, w)
		}
	}
	for _, limit := range []int{1, 2, 5, 13, 100} {
		q := fmt.Sprintf("limit=%d", limit)
		check(q, page(q), want)
	}

	for _, typ := range []string{"subscription.seats_changed", "subscription.cancellation_scheduled", "subscription.paused"} {
		var wantTyped []eventstore.Event
		for _, e := range want {
			if e.Type == typ {
				wantTyped = append(wantTyped, e)
			}
		}
		for _, limit := range []int{1, 2, 4} {
			q := fmt.Sprintf("type=%s&limit=%d", typ, limit)
			got := page(q)
			for _, e := range got {
				if e.Type != typ {
					t.Errorf("%s returned a %s", q, e.Type)
				}
			}
			check(q, got, wantTyped)
		}
	}

	// The cursor of an empty page is the one given, to poll with.
	last := want[len(want)-1].Position.GlobalPosition
	var p globalPage
	api.must(http.StatusOK, "GET", fmt.Sprintf("/v1/events?after_position=%d", last), nil, read).decode(t, &p)
	if len(p.Data) != 0 || p.HasMore || p.NextAfterPosition != last {
		t.Errorf("at the end: %+v", p)
	}

	for q, status := range map[string]int{
		"after_position=999999":  http.StatusUnprocessableEntity,
		"type=subscription.nope": http.StatusUnprocessableEntity,
		"limit=1001":             http.StatusUnprocessableEntity,
		"after_position=-1":      http.StatusUnprocessableEntity,
		"after_position=x":       http.StatusBadRequest,
		"since=1":                http.StatusBadRequest,
	} {
		if r := api.do("GET", "/v1/events?"+q, nil, read); r.status != status {
			t.Errorf("?%s: %d %s, want %d", q, r.status, r.body, status)
		} else {
			r.problem(t)
		}
	}
}
