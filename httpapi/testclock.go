package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/billing-oss/billing/internal/billing"
)

type clockJSON struct {
	Now       time.Time `json:"now"`
	Processed *int      `json:"processed,omitempty"`
}

func (a *API) getTestClock(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, clockJSON{Now: a.testClock.Now()})
}

// maxTestClockTime is as far as the test clock goes. Commands date periods and trials up to a
// few years after now, and those ends must still be times JSON and the event store can write
// (RFC 3339 years have four digits): at 9999-12-31 a one-month period already ends in year
// 10000, and the event recording it cannot be encoded (a 500).
var maxTestClockTime = time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)

type setClockRequest struct {
	Now *time.Time `json:"now"`
}

func (a *API) setTestClock(w http.ResponseWriter, r *http.Request) {
	var req setClockRequest
	if p := decodeJSON(w, r, &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	if req.Now == nil {
		writeProblem(w, r, invalidFields([]FieldError{{"/now", "required: an RFC 3339 time"}}))
		return
	}
	if _, offset := req.Now.Zone(); offset <= -24*3600 || offset >= 24*3600 {
		// Go's parser takes +24:00, which RFC 3339 (and openapi.yaml's date-time) does not.
		writeProblem(w, r, invalidFields([]FieldError{{"/now", "must be an RFC 3339 time: offsets are under 24 hours"}}))
		return
	}
	if req.Now.After(maxTestClockTime) {
		writeProblem(w, r, invalidFields([]FieldError{{"/now", "the clock stops at " + maxTestClockTime.Format(time.RFC3339)}}))
		return
	}
	if err := a.testClock.Set(*req.Now); errors.Is(err, billing.ErrClockBackwards) {
		writeProblem(w, r, invalidFields([]FieldError{{"/now", err.Error()}}))
		return
	} else if err != nil {
		// The database's fault (a 503 to retry when it is unreachable), not the request's.
		a.fail(w, r, err)
		return
	}
	// Work through what came due before answering, so the caller reads the result at once.
	out := clockJSON{Now: a.testClock.Now()}
	if a.billing != nil {
		n, err := a.billing.RunDue(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out.Processed = &n
	}
	writeJSON(w, http.StatusOK, out)
}
