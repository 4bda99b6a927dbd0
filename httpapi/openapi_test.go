package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	valerrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/httpapi/ui"
)

// openAPISpec is openapi.yaml, parsed once and shared by every test in the package.
type openAPISpec struct {
	doc       libopenapi.Document
	model     *v3.Document
	validator validator.Validator
	schemas   schema_validation.SchemaValidator
	problem   *base.Schema // components/schemas/Problem
}

var (
	specOnce   sync.Once
	loadedSpec *openAPISpec
	specErr    error
)

// specValidator parses httpapi.OpenAPI and builds the request/response validator once.
func specValidator() (*openAPISpec, error) {
	specOnce.Do(func() {
		doc, err := libopenapi.NewDocument(httpapi.OpenAPI)
		if err != nil {
			specErr = fmt.Errorf("parse openapi.yaml: %w", err)
			return
		}
		m, err := doc.BuildV3Model()
		if err != nil {
			specErr = fmt.Errorf("build the OpenAPI 3 model of openapi.yaml: %w", err)
			return
		}
		// Format assertions make format: uuid and date-time checks, not annotations.
		v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
		if len(errs) > 0 {
			specErr = fmt.Errorf("build the validator for openapi.yaml: %v", errs)
			return
		}
		s := &openAPISpec{doc: doc, model: &m.Model, validator: v,
			schemas: schema_validation.NewSchemaValidator(config.WithFormatAssertions())}
		if m.Model.Components != nil && m.Model.Components.Schemas != nil {
			if p := m.Model.Components.Schemas.GetOrZero("Problem"); p != nil {
				s.problem = p.Schema()
			}
		}
		if s.problem == nil {
			specErr = fmt.Errorf("openapi.yaml has no components/schemas/Problem")
			return
		}
		loadedSpec = s
	})
	return loadedSpec, specErr
}

// checkSpec validates one real exchange against openapi.yaml, reporting every mismatch with
// t.Errorf. reqBody and respBody are the bodies as sent and received (the caller has already
// read them from req and resp).
//
// The response is always validated: its status must be documented for the operation, its
// Content-Type must be the documented one, its body must validate against the schema, and
// documented required headers must be present and valid. The request is validated too
// (parameters, headers, security, body), except when the response is a 4xx: tests send
// malformed requests on purpose and the 4xx is the API refusing them.
//
// Answers of the router itself, 404 route-not-found for a path the API does not serve and 405
// method-not-allowed for a method a path does not support, have no operation in the document;
// they are checked to be problem+json Problems with the matching status and type.
func checkSpec(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	spec, err := specValidator()
	if err != nil {
		t.Errorf("openapi.yaml: %v", err)
		return
	}
	where := fmt.Sprintf("%s %s → %d", req.Method, req.URL.Path, resp.StatusCode)

	// The validator reads bodies: give it fresh copies so the caller's values are untouched.
	vreq := req.Clone(req.Context())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	vreq.ContentLength = int64(len(reqBody))
	if len(bytes.TrimSpace(reqBody)) == 0 {
		// The API treats an empty (or blank) body as no body at all, whatever its Content-Type
		// says (decode.go); describe it to the validator the same way.
		vreq.Header.Del("Content-Type")
	}
	vresp := *resp
	vresp.Header = resp.Header.Clone()
	vresp.Body = io.NopCloser(bytes.NewReader(respBody))
	vresp.ContentLength = int64(len(respBody))

	if !spec.hasOperation(vreq) {
		spec.checkRouterAnswer(t, where, resp, respBody)
		return
	}
	_, respErrs := spec.validator.ValidateHttpResponse(vreq, &vresp)
	if len(respErrs) > 0 {
		t.Errorf("%s: response does not match openapi.yaml:\n%s\nbody: %s", where, describe(respErrs), clip(respBody))
	}

	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return // the request may be malformed on purpose
	}
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	if c := vreq.Header.Get("X-Correlation-ID"); c != "" && !correlationIDPattern.MatchString(c) {
		// The document says such a value is ignored (and replaced), not refused: the request is
		// as good as one without it.
		vreq.Header.Del("X-Correlation-ID")
	}
	if _, reqErrs := spec.validator.ValidateHttpRequestSync(vreq); len(reqErrs) > 0 {
		t.Errorf("%s: request does not match openapi.yaml (yet the API accepted it):\n%s\nrequest body: %s",
			where, describe(reqErrs), clip(reqBody))
	}
}

// correlationIDPattern is the pattern of openapi.yaml's CorrelationID parameter.
var correlationIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// hasOperation reports whether the document has an operation for the request's path and
// method. It is stricter than the validator, which takes a HEAD request for the path's GET.
func (spec *openAPISpec) hasOperation(r *http.Request) bool {
	item, _, _ := paths.FindPath(r, spec.model, nil)
	if item == nil {
		return false
	}
	for method := range item.GetOperations().KeysFromOldest() {
		if strings.EqualFold(method, r.Method) {
			return true
		}
	}
	return false
}

// checkRouterAnswer accepts a request with no documented operation only when the router
// answered it as such: 404 route-not-found or 405 method-not-allowed, as a Problem.
func (spec *openAPISpec) checkRouterAnswer(t testing.TB, where string, resp *http.Response, body []byte) {
	t.Helper()
	wantType := map[int]string{http.StatusNotFound: "/problems/route-not-found",
		http.StatusMethodNotAllowed: "/problems/method-not-allowed"}[resp.StatusCode]
	if wantType == "" {
		t.Errorf("%s: openapi.yaml has no such operation, yet the API answered it (want 404 route-not-found or 405 method-not-allowed)\nbody: %s",
			where, clip(body))
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: router answer has Content-Type %q, want application/problem+json", where, ct)
		return
	}
	if ok, verrs := spec.schemas.ValidateSchemaBytesWithVersion(spec.problem, body, 3.1); !ok {
		t.Errorf("%s: router answer is not a Problem:\n%s\nbody: %s", where, describe(verrs), clip(body))
		return
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type != wantType || p.Status != resp.StatusCode {
		t.Errorf("%s: router answer is %s, want a %s problem with status %d", where, clip(body), wantType, resp.StatusCode)
	}
	if resp.Header.Get("X-Correlation-ID") == "" || resp.Header.Get("X-Request-ID") == "" {
		t.Errorf("%s: router answer lacks X-Correlation-ID or X-Request-ID", where)
	}
}

// describe renders the validator's findings, one per line, with the schema failures under them.
func describe(errs []*valerrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  - %s: %s", e.Message, e.Reason)
		if e.SpecLine > 0 {
			fmt.Fprintf(&b, " (openapi.yaml line %d)", e.SpecLine)
		}
		b.WriteByte('\n')
		for _, f := range e.SchemaValidationErrors {
			at := f.FieldPath
			if at == "" {
				at = "$"
			}
			fmt.Fprintf(&b, "      %s: %s [schema %s]\n", at, f.Reason, f.KeywordLocation)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func clip(b []byte) string {
	const max = 2000
	if len(b) > max {
		return string(b[:max]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	spec, err := specValidator()
	if err != nil {
		t.Fatal(err)
	}
	if v := spec.doc.GetVersion(); v != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", v)
	}
	if ok, errs := spec.validator.ValidateDocument(); !ok || len(errs) > 0 {
		t.Errorf("openapi.yaml does not validate against the OpenAPI 3.1 schema:\n%s", describe(errs))
	}
}

// TestOpenAPIExamplesMatchSchemas: every example in the document is a valid instance of the
// schema it illustrates, so the examples cannot drift from the API either.
func TestOpenAPIExamplesMatchSchemas(t *testing.T) {
	spec, err := specValidator()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	check := func(where string, media *v3.MediaType) {
		if media == nil || media.Schema == nil {
			return
		}
		schema := media.Schema.Schema()
		validate := func(name string, node interface{ Decode(any) error }) {
			var v any
			if err := node.Decode(&v); err != nil {
				t.Errorf("%s example %s: %v", where, name, err)
				return
			}
			raw, err := json.Marshal(v)
			if err != nil {
				t.Errorf("%s example %s: %v", where, name, err)
				return
			}
			checked++
			if ok, errs := spec.schemas.ValidateSchemaBytesWithVersion(schema, raw, 3.1); !ok {
				t.Errorf("%s example %s does not match its schema:\n%s\nexample: %s", where, name, describe(errs), raw)
			}
		}
		if media.Example != nil {
			validate("example", media.Example)
		}
		if media.Examples != nil {
			for name, ex := range media.Examples.FromOldest() {
				if ex != nil && ex.Value != nil {
					validate(name, ex.Value)
				}
			}
		}
	}
	for path, item := range spec.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			where := strings.ToUpper(method) + " " + path
			if op.RequestBody != nil && op.RequestBody.Content != nil {
				for mt, media := range op.RequestBody.Content.FromOldest() {
					check(where+" request "+mt, media)
				}
			}
			if op.Responses != nil && op.Responses.Codes != nil {
				for code, r := range op.Responses.Codes.FromOldest() {
					if r.Content != nil {
						for mt, media := range r.Content.FromOldest() {
							check(where+" "+code+" "+mt, media)
						}
					}
				}
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d examples checked; the walk over the document is broken", checked)
	}
}

// TestEveryRouteIsDocumented: the router and openapi.yaml list exactly the same operations.
func TestEveryRouteIsDocumented(t *testing.T) {
	spec, err := specValidator()
	if err != nil {
		t.Fatal(err)
	}
	clock := httpapi.NewTestClock(time.Now())
	h := httpapi.New(httpapi.Config{Catalog: domain.DefaultCatalog(), Clock: clock, TestClock: clock,
		Logger: slog.New(slog.DiscardHandler), Metrics: httpapi.NewMetrics(prometheus.NewRegistry())})
	routes, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("httpapi.New returned %T, not a chi.Routes", h)
	}
	served := map[string]bool{}
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if slices.Contains(ui.Paths, route) {
			return nil // the dashboard's static files (httpapi/ui): a web page, not API operations
		}
		served[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range spec.model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	for _, op := range sortedKeys(served) {
		if !documented[op] {
			t.Errorf("route %s is served but not documented in openapi.yaml", op)
		}
	}
	for _, op := range sortedKeys(documented) {
		if !served[op] {
			t.Errorf("operation %s is documented in openapi.yaml but not served", op)
		}
	}
	if len(served) < 12 {
		t.Errorf("only %d routes walked: %v", len(served), sortedKeys(served))
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// recordingTB is a testing.TB that records failures instead of failing the test.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.TB.Fatalf("checkSpec called Fatalf: "+format, args...)
}

func (r *recordingTB) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// validSubscription is a subscription exactly as the API writes one.
func validSubscription(id string) map[string]any {
	return map[string]any{
		"id": id, "customer_id": "cus_42", "plan_id": "pro_monthly", "status": "active", "seats": 2,
		"currency": "USD", "unit_amount": 4900, "interval": "month", "mrr": 9800, "payment_method": "pm_card_ok",
		"features":             []string{"api_access"},
		"current_period_start": "2026-01-31T10:00:00Z", "current_period_end": "2026-02-28T10:00:00Z",
		"trial_end": nil, "cancel_at_period_end": false, "canceled_at": nil, "paused_at": nil,
		"scheduled_change": nil, "version": 1,
		"created_at": "2026-01-31T10:00:00Z", "updated_at": "2026-01-31T10:00:00Z",
	}
}

// TestCheckSpecCanFail: checkSpec is only worth something if it reports a bad exchange, and
// only usable if it passes a good one. Each case feeds it a fabricated exchange.
func TestCheckSpecCanFail(t *testing.T) {
	id := uuid.NewString()
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withoutKey := func(m map[string]any, key string) map[string]any { delete(m, key); return m }
	with := func(m map[string]any, key string, v any) map[string]any { m[key] = v; return m }
	problem := func(status int, typ string) []byte {
		return mustJSON(map[string]any{"type": typ, "title": "t", "status": status, "detail": "d", "correlation_id": "c-1"})
	}
	createBody := `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1}`

	tests := []struct {
		name        string
		method      string
		path        string
		reqBody     string
		reqHeader   map[string]string // set on the request; "" deletes
		status      int
		contentType string
		respBody    []byte
		dropHeader  string
		wantErrors  []string // each must appear in some reported error; none: no error expected
	}{
		// Exchanges that match the document pass.
		{name: "valid subscription", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "application/json", respBody: mustJSON(validSubscription(id))},
		{name: "valid not found", method: "GET", path: "/v1/subscriptions/" + id,
			status: 404, contentType: "application/problem+json", respBody: problem(404, "/problems/not-found")},
		{name: "valid create", method: "POST", path: "/v1/subscriptions", reqBody: createBody,
			status: 201, contentType: "application/json", respBody: mustJSON(validSubscription(id))},
		{name: "malformed request refused with 400 is not a request failure", method: "POST", path: "/v1/subscriptions",
			reqBody: `{"seats": "x", "price": 1}`, status: 400, contentType: "application/problem+json",
			respBody: problem(400, "/problems/invalid-type")},
		{name: "router 405", method: "DELETE", path: "/v1/subscriptions/" + id,
			status: 405, contentType: "application/problem+json", respBody: problem(405, "/problems/method-not-allowed")},
		{name: "router 405 for HEAD", method: "HEAD", path: "/healthz",
			status: 405, contentType: "application/problem+json", respBody: problem(405, "/problems/method-not-allowed")},
		{name: "router 404", method: "GET", path: "/v1/nothing",
			status: 404, contentType: "application/problem+json", respBody: problem(404, "/problems/route-not-found")},
		{name: "test clock off", method: "GET", path: "/v1/test/clock",
			status: 404, contentType: "application/problem+json", respBody: problem(404, "/problems/route-not-found")},
		{name: "command with an empty body labelled JSON", method: "POST", path: "/v1/subscriptions/" + id + "/pause",
			reqHeader: map[string]string{"Content-Type": "application/json", "Idempotency-Key": "pause-1"},
			status:    200, contentType: "application/json", respBody: mustJSON(with(validSubscription(id), "status", "paused"))},
		{name: "catalog as the API lists it", method: "GET", path: "/v1/plans", status: 200, contentType: "application/json",
			respBody: mustJSON(map[string]any{"catalog_version": domain.DefaultCatalog().Version(), "data": domain.DefaultCatalog().Plans()})},
		{name: "invalid fields", method: "POST", path: "/v1/subscriptions", reqBody: `{}`,
			status: 422, contentType: "application/problem+json",
			respBody: mustJSON(map[string]any{"type": "/problems/invalid-fields", "title": "Invalid request fields", "status": 422,
				"detail": "see errors", "correlation_id": "c-1", "errors": []map[string]string{{"pointer": "/seats", "detail": "required"}}})},

		// Exchanges that do not are reported.
		{name: "wrong body", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "application/json", respBody: []byte(`{"id": 5}`),
			wantErrors: []string{"GET /v1/subscriptions/" + id + " → 200", "response does not match"}},
		{name: "undocumented status", method: "GET", path: "/v1/subscriptions/" + id,
			status: http.StatusTeapot, contentType: "application/problem+json", respBody: problem(418, "/problems/teapot"),
			wantErrors: []string{"→ 418", "418"}},
		{name: "wrong content type", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "text/plain", respBody: mustJSON(validSubscription(id)),
			wantErrors: []string{"→ 200", "text/plain"}},
		{name: "problem as application/json", method: "GET", path: "/v1/subscriptions/" + id,
			status: 404, contentType: "application/json", respBody: problem(404, "/problems/not-found"),
			wantErrors: []string{"→ 404"}},
		{name: "problem status differs from the response's", method: "GET", path: "/v1/subscriptions/" + id,
			status: 404, contentType: "application/problem+json", respBody: problem(409, "/problems/not-found"),
			wantErrors: []string{"→ 404", "status"}},
		{name: "undocumented field", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "application/json", respBody: mustJSON(with(validSubscription(id), "discount", 1)),
			wantErrors: []string{"discount"}},
		{name: "missing field", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "application/json", respBody: mustJSON(withoutKey(validSubscription(id), "mrr")),
			wantErrors: []string{"mrr"}},
		{name: "bad enum", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "application/json", respBody: mustJSON(with(validSubscription(id), "status", "expired")),
			wantErrors: []string{"status"}},
		{name: "bad time format", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "application/json", respBody: mustJSON(with(validSubscription(id), "created_at", "yesterday")),
			wantErrors: []string{"created_at"}},
		{name: "missing correlation header", method: "GET", path: "/v1/subscriptions/" + id,
			status: 200, contentType: "application/json", respBody: mustJSON(validSubscription(id)), dropHeader: "X-Correlation-ID",
			wantErrors: []string{"X-Correlation-ID"}},
		{name: "accepted request that breaks the document", method: "POST", path: "/v1/subscriptions",
			reqBody: `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1, "coupon": "X"}`,
			status:  201, contentType: "application/json", respBody: mustJSON(validSubscription(id)),
			wantErrors: []string{"request does not match", "coupon"}},
		{name: "unauthenticated request accepted", method: "GET", path: "/v1/plans",
			reqHeader: map[string]string{"Authorization": ""}, status: 200, contentType: "application/json",
			respBody:   mustJSON(map[string]any{"catalog_version": 1, "data": []any{}}),
			wantErrors: []string{"request does not match", "Authorization"}},
		{name: "bad idempotency key accepted", method: "POST", path: "/v1/subscriptions/" + id + "/resume",
			reqHeader: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, status: 200, contentType: "application/json",
			respBody: mustJSON(validSubscription(id)), wantErrors: []string{"request does not match", "Idempotency-Key"}},
		{name: "problem type from another status", method: "POST", path: "/v1/subscriptions", reqBody: `{}`,
			status: 422, contentType: "application/problem+json", respBody: problem(422, "/problems/not-found"),
			wantErrors: []string{"→ 422", "type"}},
		{name: "problem without correlation id", method: "GET", path: "/v1/subscriptions/" + id,
			status: 404, contentType: "application/problem+json",
			respBody:   []byte(`{"type": "/problems/not-found", "title": "t", "status": 404, "detail": "d"}`),
			wantErrors: []string{"correlation_id"}},
		{name: "undocumented route answered", method: "GET", path: "/v1/invoices",
			status: 200, contentType: "application/json", respBody: []byte(`{}`),
			wantErrors: []string{"no such operation"}},
		{name: "router 405 that is not a problem", method: "DELETE", path: "/v1/subscriptions/" + id,
			status: 405, contentType: "text/plain", respBody: []byte("Method Not Allowed"),
			wantErrors: []string{"→ 405"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://billing.test"+tt.path, strings.NewReader(tt.reqBody))
			req.Header.Set("Authorization", "Bearer bk_test")
			if tt.reqBody != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range tt.reqHeader {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			io.Copy(io.Discard, req.Body) // as a real caller has done
			header := http.Header{}
			header.Set("Content-Type", tt.contentType)
			header.Set("X-Correlation-ID", "c-1")
			header.Set("X-Request-ID", uuid.Must(uuid.NewV7()).String())
			header.Del(tt.dropHeader)
			resp := &http.Response{StatusCode: tt.status, Header: header, Body: http.NoBody, Request: req}

			rec := &recordingTB{TB: t}
			checkSpec(rec, req, []byte(tt.reqBody), resp, tt.respBody)
			all := strings.Join(rec.errors, "\n")
			t.Logf("checkSpec reported %d error(s):\n%s", len(rec.errors), all)
			if len(tt.wantErrors) == 0 {
				if len(rec.errors) > 0 {
					t.Errorf("checkSpec reported a valid exchange:\n%s", all)
				}
				return
			}
			if len(rec.errors) == 0 {
				t.Fatalf("checkSpec reported nothing; want errors mentioning %q", tt.wantErrors)
			}
			for _, want := range tt.wantErrors {
				if !strings.Contains(all, want) {
					t.Errorf("checkSpec errors do not mention %q:\n%s", want, all)
				}
			}
		})
	}
}

// TestSpecMatchesServerWithoutDatabase sends the real server the requests it can answer
// without Postgres or Redis and checks each exchange against the document.
func TestSpecMatchesServerWithoutDatabase(t *testing.T) {
	clock := httpapi.NewTestClock(time.Now())
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Catalog: domain.DefaultCatalog(), Clock: clock, TestClock: clock,
		Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	id := uuid.NewString()
	tests := []struct {
		method, path, body string
		header             map[string]string
		status             int
	}{
		{"GET", "/healthz", "", map[string]string{"X-Correlation-ID": "probe-1"}, 200},
		{"GET", "/openapi.yaml", "", nil, 200},
		{"GET", "/readyz", "", nil, 500}, // no database configured: a recovered panic
		{"GET", "/v1/plans", "", nil, 401},
		{"GET", "/v1/plans", "", map[string]string{"Authorization": "Basic abc"}, 401},
		{"POST", "/v1/subscriptions", `{"customer_id": "cus_1"}`, map[string]string{"Content-Type": "application/json"}, 401},
		{"GET", "/v1/subscriptions/" + id, "", nil, 401},
		{"POST", "/v1/subscriptions/" + id + "/pause", "", nil, 401},
		{"GET", "/v1/test/clock", "", nil, 401},
		{"GET", "/nothing-here", "", nil, 404},
		{"DELETE", "/healthz", "", nil, 405},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: status %d, want %d: %s", tt.method, tt.path, resp.StatusCode, tt.status, body)
		}
		checkSpec(t, req, []byte(tt.body), resp, body)
		if tt.path == "/openapi.yaml" && !bytes.Equal(body, httpapi.OpenAPI) {
			t.Errorf("GET /openapi.yaml does not serve httpapi.OpenAPI")
		}
		if tt.method == "GET" && tt.path == "/healthz" && resp.Header.Get("X-Correlation-ID") != "probe-1" {
			t.Errorf("X-Correlation-ID not echoed: %q", resp.Header.Get("X-Correlation-ID"))
		}
	}
}
