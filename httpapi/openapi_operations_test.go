package httpapi_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/billing-oss/billing/httpapi"
)

// specOperation is one operation of openapi.yaml, as the bad-input tests walk them: they take
// the list from the document, so an operation added to it is covered without a change here.
type specOperation struct {
	id     string // operationId
	method string // upper case
	path   string // the path template, e.g. /v1/subscriptions/{id}/seats
	op     *v3.Operation
	params []*v3.Parameter // the path item's and the operation's, the operation's winning
}

// specOperations lists every operation of openapi.yaml in document order.
func specOperations(t testing.TB) []specOperation {
	t.Helper()
	spec, err := specValidator()
	if err != nil {
		t.Fatal(err)
	}
	var ops []specOperation
	for path, item := range spec.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			o := specOperation{id: op.OperationId, method: strings.ToUpper(method), path: path, op: op}
			byKey := map[string]int{}
			for _, p := range append(append([]*v3.Parameter{}, item.Parameters...), op.Parameters...) {
				key := p.In + " " + p.Name
				if i, ok := byKey[key]; ok {
					o.params[i] = p
					continue
				}
				byKey[key] = len(o.params)
				o.params = append(o.params, p)
			}
			ops = append(ops, o)
		}
	}
	return ops
}

// writes reports whether the operation changes anything (everything but GET and HEAD).
func (o specOperation) writes() bool {
	return o.method != http.MethodGet && o.method != http.MethodHead
}

// needsAuth reports whether the operation requires a bearer key: its own security
// requirements, else the document's.
func (o specOperation) needsAuth(spec *openAPISpec) bool {
	reqs := o.op.Security
	if reqs == nil {
		reqs = spec.model.Security
	}
	for _, r := range reqs {
		if r != nil && r.Requirements != nil && r.Requirements.Len() > 0 {
			return true
		}
	}
	return false
}

// jsonBody returns the schema of the operation's application/json request body, if it has one.
func (o specOperation) jsonBody() (*base.Schema, bool) {
	if o.op.RequestBody == nil || o.op.RequestBody.Content == nil {
		return nil, false
	}
	media := o.op.RequestBody.Content.GetOrZero("application/json")
	if media == nil || media.Schema == nil {
		return nil, false
	}
	return media.Schema.Schema(), true
}

var pathParamPattern = regexp.MustCompile(`\{([^}]+)\}`)

// expand fills the path template's parameters: value(name) gives each one's raw value, which
// is escaped as a path segment.
func (o specOperation) expand(value func(name string) string) string {
	return pathParamPattern.ReplaceAllStringFunc(o.path, func(m string) string {
		return url.PathEscape(value(strings.Trim(m, "{}")))
	})
}

// isSubscriptionID reports whether path parameter name holds a subscription's id.
func (o specOperation) isSubscriptionID(name string) bool {
	return name == "id" && strings.HasPrefix(o.path, "/v1/subscriptions/{id}")
}

// resettableClock is a server clock for tests that send many unrelated inputs to one server:
// the API's TestClock only moves forward, and this one can be put back before each input, so
// every input starts from the same time and behaves the same when replayed alone.
type resettableClock struct {
	mu    sync.Mutex
	clock *httpapi.TestClock
}

func newResettableClock(start time.Time) *resettableClock {
	return &resettableClock{clock: httpapi.NewTestClock(start)}
}

func (c *resettableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clock.Now()
}

func (c *resettableClock) Set(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clock.Set(t)
}

func (c *resettableClock) reset(start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock = httpapi.NewTestClock(start)
}

// forInput returns a copy of the shared API that reports to t.
func (api *testAPI) forInput(t *testing.T) *testAPI {
	c := *api
	c.t = t
	return &c
}
