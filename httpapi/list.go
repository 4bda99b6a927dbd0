package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/projections"
)

// The query side: GET /v1/subscriptions lists from the subscription_view read model, and
// GET /v1/subscriptions/{id} reads it too unless asked for ?consistent=true.

var planIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

var statuses = []string{string(domain.StatusTrialing), string(domain.StatusActive), string(domain.StatusPastDue),
	string(domain.StatusPaused), string(domain.StatusUnpaid), string(domain.StatusCanceled)}

const (
	defaultListLimit = 20
	maxListLimit     = 100
)

// query reads and validates a request's query parameters, collecting every fault: malformed
// values (not a number, a UUID, a time…), unknown and repeated parameters are 400
// invalid-parameter; well-formed but unacceptable values are 422 invalid-fields. Pointers are
// parameter names.
type query struct {
	values    url.Values
	malformed []FieldError
	invalid   []FieldError
}

func parseQuery(r *http.Request, allowed ...string) *query {
	q := &query{}
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		q.malformed = append(q.malformed, FieldError{"query", "the query string is not valid URL encoding: " + err.Error()})
		return q
	}
	q.values = values
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			q.malformed = append(q.malformed, FieldError{name, "unknown parameter; this route takes " + strings.Join(allowed, ", ")})
		case len(values[name]) > 1:
			q.malformed = append(q.malformed, FieldError{name, "given more than once"})
		}
	}
	return q
}

// lookup returns a parameter's value and whether it was given.
func (q *query) lookup(name string) (string, bool) {
	v, ok := q.values[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (q *query) pattern(name string, re *regexp.Regexp, detail string) *string {
	v, ok := q.lookup(name)
	if !ok {
		return nil
	}
	if !re.MatchString(v) {
		q.invalid = append(q.invalid, FieldError{name, detail})
		return nil
	}
	return &v
}

func (q *query) enum(name string, allowed []string) *string {
	v, ok := q.lookup(name)
	if !ok {
		return nil
	}
	if !slices.Contains(allowed, v) {
		q.invalid = append(q.invalid, FieldError{name, "must be one of " + strings.Join(allowed, ", ")})
		return nil
	}
	return &v
}

func (q *query) integer(name string, min, max, def int) int {
	v, ok := q.lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		q.malformed = append(q.malformed, FieldError{name, fmt.Sprintf("must be an integer, got %q", v)})
	case n < min || n > max:
		q.invalid = append(q.invalid, FieldError{name, fmt.Sprintf("must be between %d and %d", min, max)})
	default:
		return n
	}
	return def
}

func (q *query) uuid(name string) *uuid.UUID {
	v, ok := q.lookup(name)
	if !ok {
		return nil
	}
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		q.malformed = append(q.malformed, FieldError{name, fmt.Sprintf("must be a UUID like 0190f5c2-7d5e-7c3a-9a51-2f4d1c9e8b7a, got %q", v)})
		return nil
	}
	return &id
}

func (q *query) boolean(name string) bool {
	v, ok := q.lookup(name)
	if !ok {
		return false
	}
	if v != "true" && v != "false" {
		q.malformed = append(q.malformed, FieldError{name, fmt.Sprintf(`must be "true" or "false", got %q`, v)})
	}
	return v == "true"
}

// problem is the answer to the faults found, or nil when there are none.
func (q *query) problem() *Problem {
	if len(q.malformed) > 0 {
		p := problem(http.StatusBadRequest, "invalid-parameter", "Invalid query parameter",
			"one or more query parameters are malformed or unknown; see errors")
		p.Errors = q.malformed
		return p
	}
	if len(q.invalid) > 0 {
		p := invalidFields(q.invalid)
		p.Detail = "one or more query parameters are invalid; see errors"
		return p
	}
	return nil
}

type subscriptionListJSON struct {
	Data              []subscriptionJSON `json:"data"`
	HasMore           bool               `json:"has_more"`
	NextStartingAfter *string            `json:"next_starting_after"`
}

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "customer_id", "status", "plan_id", "limit", "starting_after")
	customer := q.pattern("customer_id", customerIDPattern, "must be 1-128 of A-Z a-z 0-9 _ . : - starting with a letter or digit")
	status := q.enum("status", statuses)
	plan := q.pattern("plan_id", planIDPattern, "must match "+planIDPattern.String())
	limit := q.integer("limit", 1, maxListLimit, defaultListLimit)
	after := q.uuid("starting_after")
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}

	// Only the filters given go into the statement, so each can use its (column, id) index.
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if customer != nil {
		add("customer_id = $%d", *customer)
	}
	if status != nil {
		add("status = $%d", *status)
	}
	if plan != nil {
		add("plan_id = $%d", *plan)
	}
	if after != nil {
		add("id > $%d", *after)
	}
	sql := `SELECT state FROM ` + projections.SubscriptionViewTable
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	sql += fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args))

	rows, err := a.db.Query(r.Context(), sql, args...)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	states, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Subscription, error) {
		var state []byte
		if err := row.Scan(&state); err != nil {
			return domain.Subscription{}, err
		}
		return projections.DecodeState(state)
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := subscriptionListJSON{Data: make([]subscriptionJSON, 0, min(len(states), limit))}
	for i, s := range states {
		if i == limit {
			out.HasMore = true
			break
		}
		out.Data = append(out.Data, toSubscriptionJSON(s))
	}
	if out.HasMore {
		last := out.Data[len(out.Data)-1].ID
		out.NextStartingAfter = &last
	}
	writeJSON(w, http.StatusOK, out)
}

// getSubscriptionView answers GET /v1/subscriptions/{id} from the read model, which may trail
// the latest command by the projector's lag; a subscription the projector has not seen yet is
// read from its events, so it is never a 404 just after creation. ?consistent=true always reads
// the events (writeAggregate).
func (a *API) getSubscriptionView(w http.ResponseWriter, r *http.Request) {
	id, p := pathUUID(r, "id")
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	q := parseQuery(r, "consistent")
	consistent := q.boolean("consistent")
	if p := q.problem(); p != nil {
		writeProblem(w, r, p)
		return
	}
	if !consistent {
		var state []byte
		err := a.db.QueryRow(r.Context(), `SELECT state FROM `+projections.SubscriptionViewTable+` WHERE id = $1`, id).Scan(&state)
		switch {
		case err == nil:
			s, err := projections.DecodeState(state)
			if err != nil {
				a.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, toSubscriptionJSON(s))
			return
		case !errors.Is(err, pgx.ErrNoRows):
			a.fail(w, r, err)
			return
		}
	}
	a.writeAggregate(w, r, id)
}
