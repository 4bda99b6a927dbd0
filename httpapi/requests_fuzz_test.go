package httpapi_test

import (
	"bytes"
	"hash/fnv"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/fuzzcorpus"
)

// FuzzRequestBodies sends mutated requests to every write operation of openapi.yaml through the
// real handler, on real Postgres and Redis (one database for the whole run). An input chooses
// the operation (by operationId), the state of the subscription in its path (or a raw path
// parameter), how far the test clock has moved, the credentials, the Content-Type,
// Idempotency-Key and X-Correlation-ID headers, and the body (raw, padded past 1 MiB, or nested
// 100,000 deep). Every input starts from the same clock and a subscription of its own, so a
// failure replays alone. Properties:
//   - never a 5xx;
//   - every 4xx is application/problem+json whose status is the HTTP status;
//   - a refused (non-2xx) or replayed request appends no event;
//   - bad credentials are 401, a read-only key on a write is 403, a body over 1 MiB is never
//     accepted;
//   - every exchange matches openapi.yaml (checkSpec): the response always, and the request too
//     when the API accepted it.
func FuzzRequestBodies(f *testing.F) {
	fuzzcorpus.Check(f, "FuzzRequestBodies", requestSeeds())
	spec, err := specValidator()
	if err != nil {
		f.Fatal(err)
	}
	var writes []specOperation
	byID := map[string]specOperation{}
	for _, o := range specOperations(f) {
		if o.writes() {
			writes = append(writes, o)
			byID[o.id] = o
		}
	}
	if len(writes) == 0 {
		f.Fatal("openapi.yaml has no write operations")
	}
	clock := newResettableClock(testStart)
	shared := startTestAPI(f, clock, func(*httpapi.Config) {})

	f.Fuzz(func(t *testing.T, opID string, state byte, pathID string, clockSkew int64, auth byte,
		contentType, idempotencyKey, correlationID string, bodyMode byte, body []byte) {
		api := shared.forInput(t)
		clock.reset(testStart)
		op, ok := byID[opID]
		if !ok {
			h := fnv.New32a()
			h.Write([]byte(opID))
			op = writes[int(h.Sum32()%uint32(len(writes)))]
		}

		subID := unknownSubscriptionID
		if pathID == "" && strings.Contains(op.path, "{") {
			subID = api.subscriptionIn(subscriptionState(state) % subscriptionStates)
		}
		path := op.expand(func(name string) string {
			switch {
			case pathID != "":
				return pathID
			case op.isSubscriptionID(name):
				return subID
			}
			return unknownSubscriptionID
		})
		api.moveClock(clockSkew)

		switch bodyMode % 3 {
		case 1: // past the 1 MiB limit, with whitespace only, so size is the only fault
			body = append(bytes.Clone(body), bytes.Repeat([]byte(" "), maxBody+1-min(len(body), maxBody))...)
		case 2: // nested far deeper than any decoder should follow
			const depth = 100_000
			body = slices.Concat([]byte(strings.Repeat("[", depth)), body, []byte(strings.Repeat("]", depth)))
		}
		keyStatus, opts := credentials(api, auth)
		opts = append(opts, withoutHeader("Content-Type"))
		for name, value := range map[string]string{"Content-Type": contentType, "Idempotency-Key": idempotencyKey,
			"X-Correlation-ID": correlationID} {
			if v := headerValue(value); v != "" {
				opts = append(opts, withHeader(name, v))
			}
		}

		before := api.eventCount()
		r := api.do(op.method, path, body, opts...)
		appended := api.eventCount() - before

		where := op.method + " " + path
		if r.status >= 500 {
			t.Fatalf("%s: %d: %s", where, r.status, r.body)
		}
		if r.status >= 400 {
			r.problem(t)
		}
		ok2xx := r.status >= 200 && r.status < 300
		// A declined payment (402) is the one refusal that records something: the upgrade saga's
		// attempt, its voided invoice and subscription.upgrade_failed, for the audit trail.
		recorded := ok2xx || r.status == http.StatusPaymentRequired
		if appended != 0 && (!recorded || r.header.Get("Idempotent-Replayed") == "true") {
			t.Errorf("%s: answered %d (replayed: %q) yet appended %d events: %s", where, r.status,
				r.header.Get("Idempotent-Replayed"), appended, r.body)
		}
		if len(body) > maxBody && ok2xx {
			t.Errorf("%s: accepted a body of %d bytes (limit %d)", where, len(body), maxBody)
		}
		switch {
		case keyStatus == http.StatusUnauthorized && op.needsAuth(spec) && r.status != http.StatusUnauthorized:
			t.Errorf("%s with bad credentials: %d, want 401: %s", where, r.status, r.body)
		case keyStatus == http.StatusForbidden && r.status != http.StatusForbidden:
			t.Errorf("%s with a read-only key: %d, want 403: %s", where, r.status, r.body)
		}
	})
}

// maxBody is the API's request body limit (1 MiB).
const maxBody = 1 << 20

// unknownSubscriptionID is a well-formed id no subscription has.
const unknownSubscriptionID = "00000000-0000-4000-8000-000000000000"

// The subscription an input's path names.
type subscriptionState byte

const (
	stateUnknown subscriptionState = iota
	stateActive
	stateTrialing
	statePaused
	stateCanceled
	stateCancelScheduled
	stateChangeScheduled
	subscriptionStates
)

// subscriptionIn creates a subscription in the given state and returns its id.
func (api *testAPI) subscriptionIn(state subscriptionState) string {
	api.t.Helper()
	if state == stateUnknown {
		return unknownSubscriptionID
	}
	create := map[string]any{"customer_id": "cus_fuzz", "plan_id": "pro_monthly", "seats": 3, "trial_days": 0}
	if state == stateTrialing {
		delete(create, "trial_days") // the plan's default trial
	}
	var s subscription
	api.must(http.StatusCreated, "POST", "/v1/subscriptions", create).decode(api.t, &s)
	sub := "/v1/subscriptions/" + s.ID
	switch state {
	case statePaused:
		api.must(http.StatusOK, "POST", sub+"/pause", nil)
	case stateCanceled:
		api.must(http.StatusOK, "POST", sub+"/cancel", nil)
	case stateCancelScheduled:
		api.must(http.StatusOK, "POST", sub+"/cancel", map[string]any{"at_period_end": true})
	case stateChangeScheduled:
		api.must(http.StatusOK, "POST", sub+"/change-plan", map[string]any{"plan_id": "starter_monthly"})
	}
	return s.ID
}

// lastClockTime is the latest time POST /v1/test/clock takes: JSON times have four-digit years.
var lastClockTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// moveClock moves the clock skew seconds forward (a negative skew counts as positive: the clock
// never goes back) through the API, as a tester would, up to lastClockTime.
func (api *testAPI) moveClock(skew int64) {
	api.t.Helper()
	if skew < 0 {
		skew = -(skew + 1)
	}
	if skew == 0 {
		return
	}
	to := lastClockTime
	if skew < lastClockTime.Unix()-testStart.Unix() {
		to = time.Unix(testStart.Unix()+skew, 0).UTC()
	}
	r := api.do("POST", "/v1/test/clock", map[string]any{"now": to}, withKey(api.keys[httpapi.ScopeAdmin]))
	if r.status != http.StatusOK && r.status != http.StatusUnprocessableEntity {
		api.t.Fatalf("move the clock to %s: %d: %s", to.Format(time.RFC3339), r.status, r.body)
	}
}

// credentials returns the Authorization header an auth byte chooses, and the status that must
// answer it whatever the rest of the request: 401 for credentials that are not a known key, 403
// for the read-only key on a write, 0 when the key may be used.
func credentials(api *testAPI, auth byte) (int, []requestOption) {
	keys := api.keys
	switch auth % 11 {
	case 0:
		return 0, []requestOption{withKey(keys[httpapi.ScopeWrite])}
	case 1:
		return 0, []requestOption{withKey(keys[httpapi.ScopeAdmin])}
	case 2:
		return http.StatusForbidden, []requestOption{withKey(keys[httpapi.ScopeRead])}
	case 3:
		return http.StatusUnauthorized, []requestOption{withoutHeader("Authorization")}
	case 4:
		return http.StatusUnauthorized, []requestOption{withHeader("Authorization", "Basic dXNlcjpwYXNz")}
	case 5:
		return http.StatusUnauthorized, []requestOption{withHeader("Authorization", "Bearer")}
	case 6:
		return http.StatusUnauthorized, []requestOption{withKey("bk_not-a-real-key")}
	case 7:
		return http.StatusUnauthorized, []requestOption{withKey(keys[httpapi.ScopeWrite] + "' OR '1'='1")}
	case 8:
		return http.StatusUnauthorized, []requestOption{withKey(" " + keys[httpapi.ScopeWrite])}
	case 9:
		return 0, []requestOption{withHeader("Authorization", "bearer "+keys[httpapi.ScopeWrite])}
	}
	return http.StatusUnauthorized, []requestOption{withKey(strings.Repeat("k", 8192))}
}

// headerValue drops the bytes an HTTP client refuses to send in a header (controls but tab, and
// DEL), keeping everything a client could send, non-ASCII bytes included.
func headerValue(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c != 0x7f || c == '\t' {
			b = append(b, c)
		}
	}
	return string(b)
}

// requestSeeds: for each write operation, valid requests and the bad inputs of issue #7.
func requestSeeds() []fuzzcorpus.Seed {
	type input struct {
		op       string
		state    subscriptionState
		pathID   string
		skew     int64
		auth     byte
		ct       string
		key      string
		corr     string
		bodyMode byte
		body     string
	}
	const ctJSON = "application/json"
	seed := func(name string, in input) fuzzcorpus.Seed {
		return fuzzcorpus.S(name, in.op, byte(in.state), in.pathID, in.skew, in.auth, in.ct, in.key, in.corr, in.bodyMode, []byte(in.body))
	}
	create := func(body string) input { return input{op: "createSubscription", ct: ctJSON, body: body} }
	valid := `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 3}`
	on := func(op string, state subscriptionState, body string) input {
		return input{op: op, state: state, ct: ctJSON, body: body}
	}
	seeds := []fuzzcorpus.Seed{
		seed("create-valid", create(valid)),
		seed("create-with-trial-days", create(`{"customer_id": "cus_1", "plan_id": "business_yearly", "seats": 1000000, "trial_days": 730}`)),
		seed("create-malformed-json", create(`{"customer_id": "cus_1",`)),
		seed("create-not-an-object", create(`[{"customer_id": "cus_1"}]`)),
		seed("create-seats-as-string", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": "3"}`)),
		seed("create-seats-1e400", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1e400}`)),
		seed("create-seats-above-int64", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 9223372036854775808}`)),
		seed("create-seats-zero", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 0}`)),
		seed("create-seats-negative", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": -1}`)),
		seed("create-seats-fraction", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 2.5}`)),
		seed("create-seats-exponent", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 3e0}`)),
		seed("create-trial-days-huge", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1, "trial_days": 99999999999999999999}`)),
		seed("create-trial-days-null", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1, "trial_days": null}`)),
		seed("create-unknown-plan", create(`{"customer_id": "cus_1", "plan_id": "gold", "seats": 1}`)),
		seed("create-sql-injection", create(`{"customer_id": "x'); DROP TABLE events;--", "plan_id": "pro_monthly' OR '1'='1", "seats": 1}`)),
		seed("create-json-injection", create(`{"customer_id": "cus_1\", \"seats\": 5, \"x\": \"", "plan_id": "pro_monthly", "seats": 1}`)),
		seed("create-nul-bytes", create("{\"customer_id\": \"cus\\u0000_1\", \"plan_id\": \"pro_monthly\x00\", \"seats\": 1}")),
		seed("create-raw-nul", create("\x00")),
		seed("create-duplicate-keys", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 0, "seats": 3}`)),
		seed("create-key-in-other-case", create(`{"customer_id": "cus_1", "plan_id": "pro_monthly", "SEATS": 3}`)),
		seed("create-unknown-field", create(valid[:len(valid)-1]+`, "price": 0}`)),
		seed("create-deep-nesting", input{op: "createSubscription", ct: ctJSON, bodyMode: 2, body: `{"seats": 1}`}),
		seed("create-oversized", input{op: "createSubscription", ct: ctJSON, bodyMode: 1, body: valid}),
		seed("create-long-customer", create(`{"customer_id": "`+strings.Repeat("c", 129)+`", "plan_id": "pro_monthly", "seats": 1}`)),
		seed("create-invalid-utf8", create("{\"customer_id\": \"cus\xff\", \"plan_id\": \"pro_monthly\", \"seats\": 1}")),
		seed("create-text-plain", input{op: "createSubscription", ct: "text/plain", body: valid}),
		seed("create-no-content-type", input{op: "createSubscription", body: valid}),
		seed("create-form-encoded", input{op: "createSubscription", ct: "application/x-www-form-urlencoded", body: "customer_id=cus_1&plan_id=pro_monthly&seats=1"}),
		seed("create-json-suffix-type", input{op: "createSubscription", ct: "application/problem+json; charset=utf-8", body: valid}),
		seed("create-bad-content-type", input{op: "createSubscription", ct: "application/json; charset=\"", body: valid}),
		seed("create-empty-body", create(``)),
		seed("create-no-key", input{op: "createSubscription", auth: 3, ct: ctJSON, body: valid}),
		seed("create-basic-auth", input{op: "createSubscription", auth: 4, ct: ctJSON, body: valid}),
		seed("create-unknown-key", input{op: "createSubscription", auth: 6, ct: ctJSON, body: valid}),
		seed("create-injected-key", input{op: "createSubscription", auth: 7, ct: ctJSON, body: valid}),
		seed("create-read-key", input{op: "createSubscription", auth: 2, ct: ctJSON, body: valid}),
		seed("create-lowercase-bearer", input{op: "createSubscription", auth: 9, ct: ctJSON, body: valid}),
		seed("create-huge-key", input{op: "createSubscription", auth: 10, ct: ctJSON, body: valid}),
		seed("create-idempotency-key-too-long", input{op: "createSubscription", ct: ctJSON, key: strings.Repeat("k", 256), body: valid}),
		seed("create-idempotency-key-non-ascii", input{op: "createSubscription", ct: ctJSON, key: "clé", body: valid}),
		seed("create-idempotency-key-valid", input{op: "createSubscription", ct: ctJSON, key: "fuzz-create-1", body: valid}),
		seed("create-bad-correlation-id", input{op: "createSubscription", ct: ctJSON, corr: "a b\tc;DROP", body: valid}),
		seed("create-near-year-9999", input{op: "createSubscription", skew: lastClockTime.Unix() - testStart.Unix() - 86400, ct: ctJSON, body: valid}),
		seed("create-trial-near-year-9999", input{op: "createSubscription", skew: lastClockTime.Unix() - testStart.Unix() - 400*86400, ct: ctJSON,
			body: `{"customer_id": "cus_1", "plan_id": "pro_yearly", "seats": 1, "trial_days": 730}`}),

		seed("create-trial-at-clock-limit", input{op: "createSubscription", skew: time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC).Unix() - testStart.Unix(),
			ct: ctJSON, body: `{"customer_id": "cus_1", "plan_id": "business_yearly", "seats": 1, "trial_days": 730}`}),

		seed("change-plan-upgrade", on("changePlan", stateActive, `{"plan_id": "business_monthly", "seats": 4}`)),
		seed("change-plan-trialing", on("changePlan", stateTrialing, `{"plan_id": "business_yearly", "timing": "immediate"}`)),
		seed("change-plan-unknown-plan", on("changePlan", stateActive, `{"plan_id": "gold"}`)),
		seed("change-plan-seats-zero", on("changePlan", stateActive, `{"plan_id": "business_monthly", "seats": 0}`)),
		seed("change-plan-seats-null", on("changePlan", stateActive, `{"plan_id": "business_monthly", "seats": null}`)),
		seed("change-plan-bad-timing", on("changePlan", stateActive, `{"plan_id": "business_monthly", "timing": "tomorrow"}`)),
		seed("change-plan-timing-type", on("changePlan", stateActive, `{"plan_id": "business_monthly", "timing": 1}`)),
		seed("change-plan-currency", on("changePlan", stateActive, `{"plan_id": "pro_monthly_eur"}`)),
		seed("change-plan-canceled", on("changePlan", stateCanceled, `{"plan_id": "business_monthly"}`)),
		seed("change-plan-scheduled-again", on("changePlan", stateChangeScheduled, `{"plan_id": "starter_monthly"}`)),
		seed("change-plan-period-ended", input{op: "changePlan", state: stateActive, skew: 40 * 86400, ct: ctJSON, body: `{"plan_id": "business_monthly"}`}),
		seed("change-plan-unknown-subscription", on("changePlan", stateUnknown, `{"plan_id": "business_monthly"}`)),
		seed("change-plan-key-in-other-case", on("changePlan", stateActive, `{"Plan_Id": "business_monthly"}`)),

		seed("seats-valid", on("changeSeats", stateActive, `{"seats": 5}`)),
		seed("seats-max", on("changeSeats", stateTrialing, `{"seats": 1000000}`)),
		seed("seats-over-max", on("changeSeats", stateActive, `{"seats": 1000001}`)),
		seed("seats-negative", on("changeSeats", stateActive, `{"seats": -5}`)),
		seed("seats-1e400", on("changeSeats", stateActive, `{"seats": 1e400}`)),
		seed("seats-min-int64", on("changeSeats", stateActive, `{"seats": -9223372036854775808}`)),
		seed("seats-bool", on("changeSeats", stateActive, `{"seats": true}`)),
		seed("seats-object", on("changeSeats", stateActive, `{"seats": {"$gt": 0}}`)),
		seed("seats-paused", on("changeSeats", statePaused, `{"seats": 5}`)),
		seed("seats-key-in-other-case", on("changeSeats", stateActive, `{"Seats": 5}`)),
		seed("seats-bad-uuid", input{op: "changeSeats", pathID: "123", ct: ctJSON, body: `{"seats": 5}`}),
		seed("seats-uuid-without-dashes", input{op: "changeSeats", pathID: "0190f5c27d5e7c3a9a512f4d1c9e8b7a", ct: ctJSON, body: `{"seats": 5}`}),
		seed("seats-uuid-braces", input{op: "changeSeats", pathID: "{0190f5c2-7d5e-7c3a-9a51-2f4d1c9e8b7a}", ct: ctJSON, body: `{"seats": 5}`}),
		seed("seats-path-injection", input{op: "changeSeats", pathID: "' OR 1=1 --", ct: ctJSON, body: `{"seats": 5}`}),
		seed("seats-path-traversal", input{op: "changeSeats", pathID: "../../events", ct: ctJSON, body: `{"seats": 5}`}),
		seed("seats-path-nul", input{op: "changeSeats", pathID: "\x00", ct: ctJSON, body: `{"seats": 5}`}),

		seed("cancel-now", on("cancelSubscription", stateActive, `{"at_period_end": false}`)),
		seed("cancel-at-period-end", on("cancelSubscription", stateTrialing, `{"at_period_end": true}`)),
		seed("cancel-twice", on("cancelSubscription", stateCanceled, ``)),
		seed("cancel-scheduled-again", on("cancelSubscription", stateCancelScheduled, `{"at_period_end": true}`)),
		seed("cancel-string-bool", on("cancelSubscription", stateActive, `{"at_period_end": "true"}`)),
		seed("cancel-null", on("cancelSubscription", stateActive, `{"at_period_end": null}`)),
		seed("cancel-null-body", on("cancelSubscription", stateActive, `null`)),
		seed("undo-cancel", on("undoCancel", stateCancelScheduled, ``)),
		seed("undo-cancel-nothing-scheduled", on("undoCancel", stateActive, `{}`)),
		seed("undo-cancel-after-period-end", input{op: "undoCancel", state: stateCancelScheduled, skew: 40 * 86400, ct: ctJSON}),
		seed("pause", on("pauseSubscription", stateActive, `{}`)),
		seed("pause-unknown-field", on("pauseSubscription", stateActive, `{"until": "2027-01-01"}`)),
		seed("pause-trialing", on("pauseSubscription", stateTrialing, ``)),
		seed("pause-read-key", input{op: "pauseSubscription", state: stateActive, auth: 2}),
		seed("resume", on("resumeSubscription", statePaused, ``)),
		seed("resume-whitespace-body", on("resumeSubscription", statePaused, " \n\t ")),
		seed("resume-array", on("resumeSubscription", statePaused, `[]`)),

		seed("clock-forward", input{op: "setTestClock", auth: 1, ct: ctJSON, body: `{"now": "2026-03-01T00:00:00Z"}`}),
		seed("clock-year-9999", input{op: "setTestClock", auth: 1, ct: ctJSON, body: `{"now": "9999-12-31T23:59:59Z"}`}),
		seed("clock-backwards", input{op: "setTestClock", auth: 1, ct: ctJSON, body: `{"now": "2000-01-01T00:00:00Z"}`}),
		seed("clock-not-a-time", input{op: "setTestClock", auth: 1, ct: ctJSON, body: `{"now": "tomorrow"}`}),
		seed("clock-offset-24h", input{op: "setTestClock", auth: 1, ct: ctJSON, body: `{"now": "2026-03-01T00:00:00+24:00"}`}),
		seed("clock-number", input{op: "setTestClock", auth: 1, ct: ctJSON, body: `{"now": 1e400}`}),
		seed("clock-write-key", input{op: "setTestClock", auth: 0, ct: ctJSON, body: `{"now": "2026-03-01T00:00:00Z"}`}),
	}
	return seeds
}
