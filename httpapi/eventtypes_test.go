package httpapi_test

import (
	"bytes"
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
	"github.com/pb33f/jsonschema/v6"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

type eventTypeEntry struct {
	Type             string          `json:"type"`
	SchemaVersion    int             `json:"schema_version"`
	Description      string          `json:"description"`
	Schema           json.RawMessage `json:"schema"`
	ReadableVersions []int           `json:"readable_versions"`
}

// eventCatalog fetches GET /v1/event-types with the read key (spec-checked by the harness).
func (api *testAPI) eventCatalog() map[string]eventTypeEntry {
	api.t.Helper()
	var body struct {
		Data []eventTypeEntry `json:"data"`
	}
	api.must(http.StatusOK, "GET", "/v1/event-types", nil, withKey(api.keys[httpapi.ScopeRead])).decode(api.t, &body)
	out := map[string]eventTypeEntry{}
	for _, e := range body.Data {
		if _, dup := out[e.Type]; dup {
			api.t.Errorf("event type %s listed twice", e.Type)
		}
		out[e.Type] = e
	}
	return out
}

// TestEventCatalogListsEveryEventType: the catalog lists exactly the domain's event types, each
// with its current schema version, a description and the versions it can still read.
func TestEventCatalogListsEveryEventType(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	catalog := api.eventCatalog()
	listed := make([]string, 0, len(catalog))
	for typ := range catalog {
		listed = append(listed, typ)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, domain.EventTypes()) {
		t.Fatalf("catalog lists %v, the domain defines %v", listed, domain.EventTypes())
	}
	for typ, e := range catalog {
		current, _ := eventstore.CurrentSchemaVersion(typ)
		if e.SchemaVersion != current || e.Description == "" || strings.Contains(e.Description, "\n") ||
			!slices.Equal(e.ReadableVersions, eventstore.ReadableSchemaVersions(typ)) {
			t.Errorf("%s: %+v; want schema version %d, a one-line description, readable %v",
				typ, e, current, eventstore.ReadableSchemaVersions(typ))
		}
	}
	if created := catalog["subscription.created"]; created.SchemaVersion != 2 || !slices.Equal(created.ReadableVersions, []int{1, 2}) {
		t.Errorf("subscription.created: version %d readable %v, want 2 and [1 2]", created.SchemaVersion, created.ReadableVersions)
	}

	// The read scope is enough; no key is not.
	if r := api.do("GET", "/v1/event-types", nil, withoutHeader("Authorization")); r.status != http.StatusUnauthorized {
		t.Errorf("without a key: status %d", r.status)
	}
}

// emittedEvents runs domain.Decide over every kind of command and returns every event it emits.
func emittedEvents(t *testing.T) []domain.Event {
	t.Helper()
	cat := domain.DefaultCatalog()
	plan := func(id string) domain.Plan {
		p, err := cat.Plan(id)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var all []domain.Event
	now := testStart
	// run decides c on s at now, records the events and returns the evolved state.
	run := func(s domain.Subscription, c domain.Command) domain.Subscription {
		t.Helper()
		events, err := domain.Decide(s, c, now)
		if err != nil {
			t.Fatalf("decide %T%+v: %v", c, c, err)
		}
		if len(events) == 0 {
			t.Fatalf("decide %T%+v emitted nothing", c, c)
		}
		all = append(all, events...)
		for _, e := range events {
			s = domain.Evolve(s, e)
		}
		now = now.Add(26 * time.Hour)
		return s
	}
	create := func(planID string, trialDays int) domain.Subscription {
		return run(domain.Subscription{}, domain.Create{SubscriptionID: uuid.NewString(), CustomerID: "cus_schema",
			Plan: plan(planID), Seats: 3, TrialDays: &trialDays})
	}

	trial := create("pro_monthly", 14)               // created with a trial
	trial = run(trial, domain.ChangeSeats{Seats: 4}) // seats during a trial: no proration
	run(trial, domain.ChangePlan{Plan: plan("business_monthly"), Timing: domain.TimingImmediate})

	s := create("pro_monthly", 0)                                                                          // created without a trial
	s = run(s, domain.ChangePlan{Plan: plan("business_monthly"), Timing: domain.TimingImmediate})          // upgrade now
	s = run(s, domain.ChangePlan{Plan: plan("starter_monthly"), Seats: 2, Timing: domain.TimingPeriodEnd}) // scheduled
	s = run(s, domain.ChangePlan{Plan: plan("business_yearly"), Timing: domain.TimingImmediate})           // interval change
	s = run(s, domain.ChangeSeats{Seats: 9})
	s = run(s, domain.ChangeSeats{Seats: 2})
	s = run(s, domain.Cancel{AtPeriodEnd: true})
	s = run(s, domain.UndoCancel{})
	s = run(s, domain.Pause{})
	s = run(s, domain.Resume{})
	run(s, domain.Cancel{}) // cancel now

	down := create("business_monthly", 0)
	run(down, domain.ChangePlan{Plan: plan("starter_monthly")}) // a default-timed downgrade

	// The billing cycle: a trial reminded, converted and dunned to the end; renewals.
	cycle := create("pro_monthly", 14)
	now = cycle.TrialEnd.Add(-domain.TrialReminder)
	cycle = run(cycle, domain.NotifyTrialWillEnd{})
	cycle = run(cycle, domain.ChangePaymentMethod{PaymentMethod: "pm_card_declined"})
	now = cycle.PeriodEnd
	cycle = run(cycle, domain.Renew{PeriodEnd: cycle.PeriodEnd, InvoiceID: uuid.NewString()})
	cycle = run(cycle, domain.MarkPastDue{InvoiceID: "inv"})
	cycle = run(cycle, domain.RecoverPayment{InvoiceID: "inv"})
	cycle = run(cycle, domain.MarkPastDue{InvoiceID: "inv"})
	cycle = run(cycle, domain.EndDunning{InvoiceID: "inv", MarkUnpaid: true})
	run(cycle, domain.RecordUpgradeFailed{UpgradeID: uuid.NewString(), Plan: cycle.Plan, Seats: 2, Reason: domain.UpgradeReasonDeclined, DeclineCode: "card_declined"})

	// An invoice's life, with the customer's series and credit.
	var customer domain.Customer
	issued, created, err := domain.IssueInvoice(customer, domain.InvoiceRequest{InvoiceID: uuid.NewString(),
		SubscriptionID: cycle.ID, CustomerID: "cus_schema", Currency: "USD", Reason: domain.InvoiceForCycle,
		Lines: []domain.InvoiceLine{{Description: "3 × Pro", Amount: 14700, Quantity: 3, UnitAmount: 4900,
			PeriodStart: now, PeriodEnd: now.AddDate(0, 1, 0), PlanID: "pro_monthly"}},
		PeriodStart: now, PeriodEnd: now.AddDate(0, 1, 0)}, now)
	if err != nil {
		t.Fatal(err)
	}
	inv := domain.EvolveInvoice(domain.Invoice{}, created)
	declined, err := domain.RecordPayment(inv, domain.Charge{Status: domain.ChargeDeclined, DeclineCode: "card_declined", DeclineMessage: "declined"}, 1, domain.DefaultDunningPolicy, now)
	if err != nil {
		t.Fatal(err)
	}
	paid, err := domain.RecordPayment(domain.EvolveInvoice(inv, declined), domain.Charge{ID: "ch_1", Status: domain.ChargeSucceeded, Amount: 14700}, 2, domain.DefaultDunningPolicy, now)
	if err != nil {
		t.Fatal(err)
	}
	customer = domain.EvolveCustomer(customer, issued)
	credit, _ := domain.ReturnCredit(customer, domain.Invoice{InvoiceCreated: domain.InvoiceCreated{InvoiceID: "i", CustomerID: "cus_schema", Currency: "USD", CreditApplied: 500}}, now)
	all = append(all, issued, created, declined, paid, credit,
		domain.InvoiceRefunded{RefundID: "re_1", ChargeID: "ch_1", Amount: 14700, RefundedAt: now},
		domain.InvoiceVoided{Reason: "upgrade payment_declined", VoidedAt: now},
		domain.InvoiceMarkedUncollectible{At: now})

	// An upgrade saga's steps.
	change, _ := domain.Decide(s, domain.ChangeSeats{Seats: 3}, now)
	started := domain.UpgradeStarted{UpgradeID: uuid.NewString(), SubscriptionID: cycle.ID, CustomerID: "cus_schema",
		SubscriptionVersion: 4, Amount: 100, Currency: "USD", PaymentMethod: "pm_card_ok", StartedAt: now}
	if c, ok := change[0].(domain.SeatsChanged); ok {
		started.SeatsChange = &c
	}
	all = append(all, started,
		domain.UpgradeInvoiced{InvoiceID: uuid.NewString(), Total: 100, At: now},
		domain.UpgradeCharged{ChargeID: "ch_2", Amount: 100, At: now},
		domain.UpgradePlanApplied{SubscriptionVersion: 5, At: now},
		domain.UpgradeCompleted{At: now},
		domain.UpgradeCompensating{Reason: domain.UpgradeReasonConflict, At: now},
		domain.UpgradeAborted{Reason: domain.UpgradeReasonConflict, RefundID: "re_2", At: now})
	return all
}

// TestEveryEmittedEventMatchesItsPublishedSchema: every event Decide emits, over every kind of
// command, validates against the JSON Schema the catalog serves for its type, so the catalog
// cannot drift from the code. The v1 shape of subscription.created (no billing_anchor) does not.
func TestEveryEmittedEventMatchesItsPublishedSchema(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	catalog := api.eventCatalog()

	schemas := map[string]*jsonschema.Schema{}
	for typ, e := range catalog {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(e.Schema))
		if err != nil {
			t.Fatalf("%s: schema is not JSON: %v", typ, err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		url := "mem://events/" + typ + ".json"
		if err := c.AddResource(url, doc); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if schemas[typ], err = c.Compile(url); err != nil {
			t.Fatalf("%s: published schema does not compile: %v", typ, err)
		}
		var meta struct {
			Schema string `json:"$schema"`
		}
		json.Unmarshal(e.Schema, &meta)
		if meta.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema %q, want draft 2020-12", typ, meta.Schema)
		}
	}

	validate := func(typ string, data []byte) error {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return err
		}
		return schemas[typ].Validate(inst)
	}
	seen := map[string]int{}
	for _, e := range emittedEvents(t) {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		seen[e.EventType()]++
		if _, ok := schemas[e.EventType()]; !ok {
			t.Errorf("%s is not in the catalog", e.EventType())
			continue
		}
		if err := validate(e.EventType(), data); err != nil {
			t.Errorf("%s %s does not match its published schema: %v", e.EventType(), data, err)
		}
	}
	for _, typ := range domain.EventTypes() {
		if seen[typ] == 0 {
			t.Errorf("no command emitted %s, so its schema went unchecked", typ)
		}
	}

	// The schemas are strict: a missing required field or an unknown one is refused.
	v1 := `{"subscription_id": "s", "customer_id": "c", "plan": {"plan_id": "p", "name": "P", "interval": "month",
		"unit_amount": 1, "currency": "USD", "features": []}, "seats": 1, "status": "active",
		"period_start": "2026-01-31T10:00:00Z", "period_end": "2026-02-28T10:00:00Z", "created_at": "2026-01-31T10:00:00Z"}`
	if err := validate("subscription.created", []byte(v1)); err == nil {
		t.Error("v1 subscription.created data (no billing_anchor) matches the v2 schema")
	}
	if err := validate("subscription.paused", []byte(`{"paused_at": "2026-01-31T10:00:00Z", "by": "me"}`)); err == nil {
		t.Error("an unknown property matches the schema")
	}
	if err := validate("subscription.paused", []byte(`{"paused_at": "yesterday"}`)); err == nil {
		t.Error("a time that is not a date-time matches the schema")
	}
}

// TestOldEventsReplayThroughEveryReadPath: a subscription whose created event is a v1 row
// inserted in SQL by an "old writer" (no billing_anchor), followed by a v1 seats_changed
// appended normally, reads the same through every read path: the aggregate load, commands over
// the API, the subscriptions projector (Apply and Rebuild), and the replay endpoint.
func TestOldEventsReplayThroughEveryReadPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	api := newTestAPI(t)
	id := uuid.New()
	pro, err := domain.DefaultCatalog().Plan("pro_monthly")
	if err != nil {
		t.Fatal(err)
	}
	terms, err := json.Marshal(pro.Terms())
	if err != nil {
		t.Fatal(err)
	}
	start, end := testStart, domain.AddInterval(testStart, pro.Interval, 1)
	v1 := fmt.Sprintf(`{"subscription_id": %q, "customer_id": "cus_v1", "plan": %s, "seats": 3, "status": "active",
		"period_start": %q, "period_end": %q, "created_at": %q}`,
		id, terms, start.Format(time.RFC3339), end.Format(time.RFC3339), start.Format(time.RFC3339))
	if _, err := api.db.Exec(ctx, `INSERT INTO events
		(stream_id, stream_type, version, event_id, type, schema_version, data, metadata, occurred_at)
		VALUES ($1, 'subscription', 1, $2, 'subscription.created', 1, $3::jsonb, '{"source": "v1 writer"}', $4)`,
		id, uuid.New(), v1, start); err != nil {
		t.Fatal(err)
	}

	// The same history, decided today: what every read path must agree with.
	zero := 0
	want := domain.Subscription{}
	decide := func(c domain.Command, at time.Time) []domain.Event {
		t.Helper()
		events, err := domain.Decide(want, c, at)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			want = domain.Evolve(want, e)
		}
		return events
	}
	decide(domain.Create{SubscriptionID: id.String(), CustomerID: "cus_v1", Plan: pro, Seats: 3, TrialDays: &zero}, start)

	// A seats_changed appended normally (v1 is its current version) on the upcast state.
	loaded, _, err := eventstore.LoadSubscription(ctx, api.db, id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatalf("load the v1 stream: %v", err)
	}
	if !reflect.DeepEqual(loaded, want) || !loaded.BillingAnchor.Equal(start) {
		t.Fatalf("v1 created loaded as\n%+v\nwant\n%+v", loaded, want)
	}
	seatsAt := start.Add(5 * 24 * time.Hour)
	seats, err := domain.Decide(loaded, domain.ChangeSeats{Seats: 5}, seatsAt)
	if err != nil {
		t.Fatal(err)
	}
	decide(domain.ChangeSeats{Seats: 5}, seatsAt)
	encoded, err := eventstore.EncodeEvents(seats, eventstore.Metadata{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if encoded[0].SchemaVersion != 1 {
		t.Fatalf("seats_changed written at schema version %d, want 1", encoded[0].SchemaVersion)
	}
	if _, err := eventstore.Append(ctx, api.db, eventstore.Stream{ID: id, Type: eventstore.SubscriptionStream}, 1, encoded); err != nil {
		t.Fatal(err)
	}

	// A command over the API works on the upcast state (a seat decrease: it costs nothing now,
	// so it needs no payment method, which v1 subscriptions never had).
	commandAt := start.Add(9 * 24 * time.Hour)
	api.setClock(commandAt)
	decide(domain.ChangeSeats{Seats: 4}, commandAt)
	var changed changeResult
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+id.String()+"/seats", map[string]any{"seats": 4}).decode(t, &changed)
	if got := changed.Subscription; got.Seats != 4 || got.Version != 3 || !got.CurrentPeriodStart.Equal(start) ||
		!got.CurrentPeriodEnd.Equal(end) || got.PlanID != "pro_monthly" {
		t.Errorf("seats over the API: %+v", got)
	}
	if len(changed.Proration.Lines) == 0 {
		t.Error("the seat change over the API has no proration lines")
	}

	// The aggregate load.
	events, err := eventstore.Load(ctx, api.db, id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[0].SchemaVersion != 1 || events[1].SchemaVersion != 1 || events[2].SchemaVersion != 1 {
		t.Fatalf("stored history: %d events %+v", len(events), events)
	}
	aggregate, _, err := eventstore.LoadSubscription(ctx, api.db, id, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(aggregate, want) {
		t.Errorf("aggregate\n%+v\nwant\n%+v", aggregate, want)
	}

	// The subscriptions projector, event by event, then rebuilt.
	p := projections.NewSubscriptions()
	for _, e := range events {
		if _, err := projections.Apply(ctx, api.db, p, e, -1); err != nil {
			t.Fatalf("apply %s v%d: %v", e.Type, e.SchemaVersion, err)
		}
	}
	checkView := func(how string) {
		t.Helper()
		var state []byte
		if err := api.db.QueryRow(ctx, `SELECT state FROM subscription_view WHERE id = $1`, id).Scan(&state); err != nil {
			t.Fatalf("%s: read the view: %v", how, err)
		}
		view, err := projections.DecodeState(state)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(view, aggregate) {
			t.Errorf("%s: view\n%+v\naggregate\n%+v", how, view, aggregate)
		}
	}
	checkView("apply")
	// Rebuild reads the global log up to its visibility horizon: wait until it shows everything.
	testenv.WholeLog(t, api.db)
	if _, err := projections.Rebuild(ctx, api.db, p, projections.RebuildOptions{}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	checkView("rebuild")
	var view subscription
	api.must(http.StatusOK, "GET", "/v1/subscriptions/"+id.String(), nil).decode(t, &view)
	if view.Seats != 4 || view.Version != 3 {
		t.Errorf("GET the subscription: %+v", view)
	}

	// The replay endpoint, at the v1 event and at the end.
	for _, tc := range []struct {
		version int64
		seats   int64
	}{{1, 3}, {2, 5}, {3, 4}} {
		var replay struct {
			Version      int64        `json:"version"`
			Subscription subscription `json:"subscription"`
			Events       []struct {
				Type          string         `json:"type"`
				SchemaVersion int            `json:"schema_version"`
				Data          map[string]any `json:"data"`
			} `json:"events"`
		}
		api.must(http.StatusOK, "GET", fmt.Sprintf("/v1/subscriptions/%s/replay?version=%d", id, tc.version), nil).decode(t, &replay)
		if replay.Version != tc.version || replay.Subscription.Seats != tc.seats ||
			!replay.Subscription.CurrentPeriodStart.Equal(start) || !replay.Subscription.CurrentPeriodEnd.Equal(end) {
			t.Errorf("replay at version %d: %+v", tc.version, replay)
		}
		// The replayed v1 created event is shown upcast: stored version 1, with a billing anchor.
		if len(replay.Events) == 0 || replay.Events[0].Type != "subscription.created" || replay.Events[0].SchemaVersion != 1 ||
			replay.Events[0].Data["billing_anchor"] != start.Format(time.RFC3339) {
			t.Errorf("replay at version %d: the created event is %+v", tc.version, replay.Events)
		}
	}
}
