package httpapi_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/billing-oss/billing/httpapi"
)

// TestOpenAPIBadInput sends every operation of openapi.yaml a table of bad inputs derived from
// its description: for each body property a wrong type, null where it is not allowed, numbers
// out of range, strings outside their pattern, enum or format; each required property missing;
// an unknown property; malformed and oversized bodies and wrong content types; path parameters
// that are not UUIDs; query parameters of the wrong type, out of range, missing, repeated or
// unknown; bad Idempotency-Keys; no or bad credentials, and the read-only key on a write.
// Operations come from the document, so one added to it later is covered as it is.
//
// Every such request must be refused with a 4xx (401 and 403 for credentials) that is an
// application/problem+json whose status is the HTTP status, must append no event, and its
// exchange must match the document (checkSpec, in api.do). A case the document itself declares
// invalid is also checked to be so by the document's validator, so a mistake in the generator
// cannot pass for a lenient API.
func TestOpenAPIBadInput(t *testing.T) {
	t.Parallel()
	spec, err := specValidator()
	if err != nil {
		t.Fatal(err)
	}
	shared := newTestAPI(t)
	covered, total := 0, 0
	for _, o := range specOperations(t) {
		t.Run(o.id, func(t *testing.T) {
			api := shared.forInput(t)
			base := baselineRequest(api, spec, o)
			cases := badInputs(api, spec, o, base)
			if len(cases) == 0 {
				t.Logf("%s %s takes nothing a request could get wrong", o.method, o.path)
				return
			}
			covered++
			total += len(cases)
			for _, c := range cases {
				req := base.clone()
				c.mutate(&req)
				where := fmt.Sprintf("%s %s: %s", o.method, o.path, c.name)
				if c.byDocument {
					if errs := req.validate(spec); len(errs) == 0 {
						t.Errorf("%s: the document accepts this request, so it is no bad input (a generator mistake): %s", where, req)
						continue
					}
				}
				before := api.eventCount()
				r := api.do(o.method, req.target(), req.body, req.options()...)
				if appended := api.eventCount() - before; appended != 0 {
					t.Errorf("%s: answered %d and appended %d events", where, r.status, appended)
				}
				switch {
				case r.status < 400 || r.status >= 500:
					t.Errorf("%s: status %d, want a 4xx: %s\nrequest: %s", where, r.status, r.body, req)
					continue
				case c.status != 0 && r.status != c.status:
					t.Errorf("%s: status %d, want %d: %s", where, r.status, c.status, r.body)
				}
				r.problem(t)
			}
		})
	}
	if covered < 15 || total < 150 {
		t.Errorf("only %d operations got bad inputs, %d in all; the walk over openapi.yaml is broken", covered, total)
	}
	t.Logf("%d bad inputs over %d operations", total, covered)
}

// specRequest is a request of one operation, built up from its parts.
type specRequest struct {
	op          specOperation
	method      string
	pathParams  map[string]string
	query       url.Values
	rawQuery    string // appended as is, for parameters url.Values cannot write
	header      http.Header
	removed     []string // headers to delete from what api.do sets
	body        string
	contentType string // "" for none
}

func (r specRequest) clone() specRequest {
	c := r
	c.query = url.Values{}
	for k, v := range r.query {
		c.query[k] = slices.Clone(v)
	}
	c.header = r.header.Clone()
	c.removed = slices.Clone(r.removed)
	c.pathParams = maps.Clone(r.pathParams)
	return c
}

func (r specRequest) target() string {
	path := r.op.expand(func(name string) string { return r.pathParams[name] })
	q := r.query.Encode()
	if r.rawQuery != "" {
		q = strings.TrimPrefix(q+"&"+r.rawQuery, "&")
	}
	if q == "" {
		return path
	}
	return path + "?" + q
}

func (r specRequest) options() []requestOption {
	opts := []requestOption{withoutHeader("Content-Type")}
	if r.contentType != "" {
		opts = append(opts, withHeader("Content-Type", r.contentType))
	}
	for name, values := range r.header {
		opts = append(opts, withHeader(name, values[0]))
	}
	for _, name := range r.removed {
		opts = append(opts, withoutHeader(name))
	}
	return opts
}

func (r specRequest) String() string {
	return fmt.Sprintf("%s %s (content type %q, headers %v, removed %v) body %s", r.method, r.target(), r.contentType,
		r.header, r.removed, clip([]byte(r.body)))
}

// validate returns what the document's validator finds wrong with the request.
func (r specRequest) validate(spec *openAPISpec) []string {
	req := httptest.NewRequest(r.method, "http://billing.test"+r.target(), strings.NewReader(r.body))
	for name, values := range r.header {
		req.Header.Set(name, values[0])
	}
	for _, name := range r.removed {
		req.Header.Del(name)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	_, errs := spec.validator.ValidateHttpRequestSync(req)
	var out []string
	for _, e := range errs {
		out = append(out, e.Message)
	}
	return out
}

// baselineRequest is a well-formed request of the operation: path parameters naming an active
// subscription (or a random id), the required query parameters, the documented example body,
// and the admin key, so that no scope gets in the way of the cases that are not about it.
func baselineRequest(api *testAPI, spec *openAPISpec, o specOperation) specRequest {
	api.t.Helper()
	req := specRequest{op: o, method: o.method, pathParams: map[string]string{}, query: url.Values{}, header: http.Header{}}
	req.header.Set("Authorization", "Bearer "+api.keys[httpapi.ScopeAdmin])
	for _, p := range o.params {
		switch {
		case p.In == "path" && o.isSubscriptionID(p.Name):
			req.pathParams[p.Name] = api.create("pro_monthly", 2).ID
		case p.In == "path":
			req.pathParams[p.Name] = exampleParam(p)
		case p.In == "query" && p.Required != nil && *p.Required:
			req.query.Set(p.Name, exampleParam(p))
		}
	}
	if s, ok := o.jsonBody(); ok {
		req.body, req.contentType = exampleBody(api.t, o, s), "application/json"
	}
	return req
}

// exampleParam is a valid value of a parameter: its example, else one its schema describes.
func exampleParam(p *v3.Parameter) string {
	var v any
	if p.Example != nil && p.Example.Decode(&v) == nil {
		return fmt.Sprint(v)
	}
	s := p.Schema.Schema()
	if s.Example != nil && s.Example.Decode(&v) == nil {
		return fmt.Sprint(v)
	}
	if len(s.Enum) > 0 && s.Enum[0].Decode(&v) == nil {
		return fmt.Sprint(v)
	}
	switch {
	case s.Format == "date-time":
		return testStart.Format("2006-01-02T15:04:05Z07:00")
	case s.Format == "uuid":
		return uuid.NewString()
	case slices.Contains(s.Type, "integer"):
		if s.Minimum != nil {
			return strconv.FormatFloat(*s.Minimum, 'f', 0, 64)
		}
		return "1"
	}
	return "x"
}

// exampleBody is the operation's first documented request example, else an object of its
// required properties' examples.
func exampleBody(t *testing.T, o specOperation, s *base.Schema) string {
	t.Helper()
	media := o.op.RequestBody.Content.GetOrZero("application/json")
	var v any
	switch {
	case media.Example != nil:
		if err := media.Example.Decode(&v); err != nil {
			t.Fatal(err)
		}
	case media.Examples != nil && media.Examples.Len() > 0:
		for _, ex := range media.Examples.FromOldest() {
			if err := ex.Value.Decode(&v); err != nil {
				t.Fatal(err)
			}
			break
		}
	default:
		fields := map[string]any{}
		for _, name := range s.Required {
			if ps := property(s, name); ps != nil && ps.Example != nil {
				var x any
				if err := ps.Example.Decode(&x); err == nil {
					fields[name] = x
				}
			}
		}
		v = fields
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// badInput is one bad request: a change to the baseline.
type badInput struct {
	name       string
	mutate     func(*specRequest)
	byDocument bool // the document itself declares the request invalid
	status     int  // the status it must get; 0 for any 4xx
}

func badInputs(api *testAPI, spec *openAPISpec, o specOperation, base specRequest) []badInput {
	var cases []badInput
	add := func(c badInput) { cases = append(cases, c) }

	if s, ok := o.jsonBody(); ok {
		cases = append(cases, bodyInputs(s, base.body)...)
	}
	for _, p := range o.params {
		s := p.Schema.Schema()
		switch p.In {
		case "path":
			if s.Format != "uuid" {
				break
			}
			for _, bad := range []string{"123", "not-a-uuid", strings.ReplaceAll(uuid.NewString(), "-", ""),
				"{" + uuid.NewString() + "}", uuid.NewString() + "0", "' OR 1=1 --", "\x00"} {
				add(badInput{name: fmt.Sprintf("path %s = %q", p.Name, bad), byDocument: true,
					mutate: func(r *specRequest) { r.pathParams[p.Name] = bad }})
			}
		case "query":
			for _, bad := range badValues(s) {
				add(badInput{name: fmt.Sprintf("query %s = %s (%s)", p.Name, bad.raw, bad.why), byDocument: true,
					mutate: func(r *specRequest) { r.query.Set(p.Name, bad.raw) }})
			}
			if p.Required != nil && *p.Required {
				add(badInput{name: "query " + p.Name + " missing", byDocument: true, mutate: func(r *specRequest) { r.query.Del(p.Name) }})
			}
			add(badInput{name: "query " + p.Name + " repeated", mutate: func(r *specRequest) {
				v := exampleParam(p)
				r.query[p.Name] = []string{v, v}
			}})
		case "header":
			if p.Name == "Idempotency-Key" {
				for _, bad := range []string{strings.Repeat("k", 256), "clé-1"} {
					add(badInput{name: fmt.Sprintf("header %s of %d bytes", p.Name, len(bad)), byDocument: true,
						mutate: func(r *specRequest) { r.header.Set(p.Name, bad) }})
				}
			}
		}
	}
	if slices.ContainsFunc(o.params, func(p *v3.Parameter) bool { return p.In == "query" }) {
		add(badInput{name: "unknown query parameter", mutate: func(r *specRequest) { r.rawQuery = "no_such_parameter=1" }})
		add(badInput{name: "query not URL-encoded", mutate: func(r *specRequest) { r.rawQuery = "%zz" }})
	}
	if o.needsAuth(spec) {
		add(badInput{name: "no credentials", byDocument: true, status: http.StatusUnauthorized,
			mutate: func(r *specRequest) { r.header.Del("Authorization"); r.removed = append(r.removed, "Authorization") }})
		add(badInput{name: "basic credentials", status: http.StatusUnauthorized,
			mutate: func(r *specRequest) { r.header.Set("Authorization", "Basic dXNlcjpwYXNz") }})
		add(badInput{name: "unknown key", status: http.StatusUnauthorized,
			mutate: func(r *specRequest) { r.header.Set("Authorization", "Bearer bk_not-a-real-key") }})
		add(badInput{name: "key with SQL injected", status: http.StatusUnauthorized,
			mutate: func(r *specRequest) {
				r.header.Set("Authorization", "Bearer "+api.keys[httpapi.ScopeAdmin]+"' OR '1'='1")
			}})
		if o.writes() {
			add(badInput{name: "read-only key", status: http.StatusForbidden,
				mutate: func(r *specRequest) { r.header.Set("Authorization", "Bearer "+api.keys[httpapi.ScopeRead]) }})
		}
	}
	return cases
}

// bodyInputs are the bad bodies of a JSON request body schema s, derived from the valid body.
func bodyInputs(s *base.Schema, valid string) []badInput {
	var fields map[string]any
	_ = json.Unmarshal([]byte(valid), &fields)
	if fields == nil {
		fields = map[string]any{}
	}
	// withField is the valid body with the field set to raw JSON, written exactly as given
	// (1e400 has no float64).
	withField := func(name string, raw string) string {
		var kept []string
		for k, v := range fields {
			if k != name {
				kv, _ := json.Marshal(map[string]any{k: v})
				kept = append(kept, strings.TrimSuffix(strings.TrimPrefix(string(kv), "{"), "}"))
			}
		}
		slices.Sort(kept)
		key, _ := json.Marshal(name)
		return "{" + strings.Join(append(kept, string(key)+": "+raw), ", ") + "}"
	}
	without := func(name string) string {
		c := map[string]any{}
		for k, v := range fields {
			if k != name {
				c[k] = v
			}
		}
		b, _ := json.Marshal(c)
		return string(b)
	}
	body := func(name, b string, byDocument bool, contentType ...string) badInput {
		return badInput{name: "body: " + name, byDocument: byDocument, mutate: func(r *specRequest) {
			r.body = b
			if len(contentType) > 0 {
				r.contentType = contentType[0]
			}
		}}
	}

	cases := []badInput{
		body("malformed JSON", `{"`, true),
		body("an array", `[]`, true),
		body("a string", `"{}"`, true),
		body("null", `null`, true),
		body("two objects", valid+valid, false),
		body("trailing garbage", valid+" x", false),
		body("over 1 MiB", `{"padding": "`+strings.Repeat("a", 1<<20)+`"}`, false),
		body("nested 100,000 deep", strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000), true),
		body("as text/plain", valid, true, "text/plain"),
		body("as form data", "a=1", true, "application/x-www-form-urlencoded"),
		body("as application/problem+json", valid, true, "application/problem+json"),
		{name: "body without a content type", mutate: func(r *specRequest) { r.contentType = "" }},
	}
	closed := s.AdditionalProperties != nil && s.AdditionalProperties.IsB() && !s.AdditionalProperties.B
	if closed {
		cases = append(cases, body("unknown property", withField("unexpected_field", "1"), true))
	}
	if s.MaxProperties != nil && *s.MaxProperties == 0 {
		cases = append(cases, body("any property", `{"x": 1}`, true))
	}
	for _, name := range s.Required {
		cases = append(cases, body("required "+name+" missing", without(name), true))
	}
	if s.Properties == nil {
		return cases
	}
	for name, proxy := range s.Properties.FromOldest() {
		ps := flatten(proxy.Schema())
		for _, raw := range wrongTypes(ps) {
			cases = append(cases, body(fmt.Sprintf("%s = %s (wrong type)", name, raw), withField(name, raw), true))
		}
		if !slices.Contains(ps.Type, "null") {
			cases = append(cases, body(name+" = null", withField(name, "null"), true))
		}
		for _, bad := range badValues(ps) {
			raw := bad.raw
			if slices.Contains(ps.Type, "string") {
				q, _ := json.Marshal(raw)
				raw = string(q)
			}
			cases = append(cases, body(fmt.Sprintf("%s = %s (%s)", name, raw, bad.why), withField(name, raw), true))
		}
		if valid, ok := fields[name]; ok && closed {
			v, _ := json.Marshal(valid)
			upper := strings.Replace(withField(name, string(v)), `"`+name+`"`, `"`+strings.ToUpper(name)+`"`, 1)
			cases = append(cases, body(name+" named in upper case", upper, true))
		}
	}
	return cases
}

// property returns the flattened schema of one property of s.
func property(s *base.Schema, name string) *base.Schema {
	if s.Properties == nil {
		return nil
	}
	if p := s.Properties.GetOrZero(name); p != nil {
		return flatten(p.Schema())
	}
	return nil
}

// flatten merges the allOf parts of a schema into one (type, bounds, pattern, enum, format).
func flatten(s *base.Schema) *base.Schema {
	if s == nil || len(s.AllOf) == 0 {
		return s
	}
	out := *s
	for _, part := range s.AllOf {
		p := flatten(part.Schema())
		if p == nil {
			continue
		}
		if len(out.Type) == 0 {
			out.Type = p.Type
		}
		if out.Minimum == nil {
			out.Minimum = p.Minimum
		}
		if out.Maximum == nil {
			out.Maximum = p.Maximum
		}
		if out.Pattern == "" {
			out.Pattern = p.Pattern
		}
		if out.Format == "" {
			out.Format = p.Format
		}
		if len(out.Enum) == 0 {
			out.Enum = p.Enum
		}
		if out.MaxLength == nil {
			out.MaxLength = p.MaxLength
		}
	}
	return &out
}

// wrongTypes are JSON values of types the schema does not allow (one per JSON type).
func wrongTypes(s *base.Schema) []string {
	if len(s.Type) == 0 {
		return nil
	}
	allowed := func(t string) bool {
		return slices.Contains(s.Type, t) || (t == "integer" && slices.Contains(s.Type, "number"))
	}
	var out []string
	for _, c := range []struct{ typ, raw string }{
		{"string", `"1"`}, {"integer", `7`}, {"number", `1.5`}, {"boolean", `true`}, {"array", `[1]`}, {"object", `{"a": 1}`},
	} {
		if !allowed(c.typ) {
			out = append(out, c.raw)
		}
	}
	return out
}

type badValue struct{ raw, why string }

// badValues are values of the schema's own type that it still refuses: out of range, too long,
// outside the pattern, the enum or the format. Strings are unquoted.
func badValues(s *base.Schema) []badValue {
	var out []badValue
	switch {
	case slices.Contains(s.Type, "integer") || slices.Contains(s.Type, "number"):
		if s.Minimum != nil {
			out = append(out, badValue{strconv.FormatFloat(*s.Minimum-1, 'f', -1, 64), "below the minimum"},
				badValue{"-9223372036854775809", "below int64"})
		}
		if s.Maximum != nil {
			out = append(out, badValue{strconv.FormatFloat(*s.Maximum+1, 'f', -1, 64), "above the maximum"},
				badValue{"9223372036854775808", "above int64"}, badValue{"1e400", "above float64"})
		}
		if !slices.Contains(s.Type, "number") {
			out = append(out, badValue{"2.5", "not an integer"})
			if s.Maximum == nil || *s.Maximum < math.MaxInt64 {
				out = append(out, badValue{"ten", "not a number"})
			}
		}
	case slices.Contains(s.Type, "string"):
		if s.Pattern != "" {
			if re, err := regexp.Compile(s.Pattern); err == nil {
				for _, v := range []string{"has spaces & symbols!", strings.Repeat("a", 300), "x'); DROP TABLE events;--", ""} {
					if !re.MatchString(v) {
						out = append(out, badValue{v, "outside the pattern"})
					}
				}
			}
		}
		if len(s.Enum) > 0 {
			out = append(out, badValue{"not-one-of-the-enum", "not in the enum"})
		}
		switch s.Format {
		case "date-time":
			out = append(out, badValue{"tomorrow", "not a date-time"}, badValue{"2026-13-01T00:00:00Z", "month 13"},
				badValue{"2026-03-01T00:00:00+24:00", "offset of 24 hours"})
		case "uuid":
			out = append(out, badValue{"not-a-uuid", "not a UUID"})
		}
		if s.MaxLength != nil {
			out = append(out, badValue{strings.Repeat("a", int(*s.MaxLength)+1), "too long"})
		}
	}
	return out
}
