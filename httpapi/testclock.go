package httpapi

import (
	"net/http"
	"time"
)

type clockJSON struct {
	Now       time.Time `json:"now"`
	Processed *int      `json:"processed,omitempty"`
}

func (a *API) getTestClock(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, clockJSON{Now: a.testClock.Now()})
}

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
	if err := a.testClock.Set(*req.Now); err != nil {
		writeProblem(w, r, invalidFields([]FieldError{{"/now", err.Error()}}))
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
