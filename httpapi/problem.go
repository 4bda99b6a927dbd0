package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Problem is an RFC 9457 problem details object: every error this API returns is one.
type Problem struct {
	Type          string       `json:"type"`
	Title         string       `json:"title"`
	Status        int          `json:"status"`
	Detail        string       `json:"detail,omitempty"`
	CorrelationID string       `json:"correlation_id,omitempty"`
	Errors        []FieldError `json:"errors,omitempty"`
	// Extension members of a failed paid change: the upgrade saga and the decline's code.
	UpgradeID   string `json:"upgrade_id,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
}

// FieldError names one invalid part of a request, as a JSON pointer into the body (or the name
// of the header or path parameter), with what is wrong with it.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// problem builds a Problem whose type URI is derived from a short slug.
func problem(status int, slug, title, detail string) *Problem {
	return &Problem{Type: "/problems/" + slug, Title: title, Status: status, Detail: detail}
}

func invalidFields(errs []FieldError) *Problem {
	p := problem(http.StatusUnprocessableEntity, "invalid-fields", "Invalid request fields",
		"one or more fields are invalid; see errors")
	p.Errors = errs
	return p
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.CorrelationID = correlationID(r.Context())
	body, _ := json.Marshal(p)
	writeBody(w, p.Status, "application/problem+json", body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	writeBody(w, status, "application/json", body)
}

func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	w.Write(body)
	if strings.HasSuffix(contentType, "json") {
		w.Write([]byte("\n")) // so that a curl in a terminal ends its line
	}
}
