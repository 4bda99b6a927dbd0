package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

type apiKeyContextKey struct{}

// authenticate resolves the Bearer key of every /v1 request; without a valid key the request
// stops here with 401.
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="billing"`)
			writeProblem(w, r, problem(http.StatusUnauthorized, "unauthenticated", "Authentication required",
				"send an API key as 'Authorization: Bearer <key>'"))
			return
		}
		var key APIKey
		var err error
		if a.keys != nil {
			key, err = a.keys.lookup(r.Context(), a.db, secret)
		} else {
			key, err = lookupAPIKey(r.Context(), a.db, secret)
		}
		switch {
		case errors.Is(err, errUnknownKey):
			w.Header().Set("WWW-Authenticate", `Bearer realm="billing", error="invalid_token"`)
			writeProblem(w, r, problem(http.StatusUnauthorized, "unauthenticated", "Authentication required",
				"the API key is unknown or revoked"))
			return
		case err != nil:
			a.fail(w, r, err)
			return
		}
		setActor(r.Context(), key.Name)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), apiKeyContextKey{}, key)))
	})
}

// require lets a request through only if its key's scope includes need.
func require(need Scope) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !callerKey(r.Context()).Scope.Includes(need) {
				writeProblem(w, r, problem(http.StatusForbidden, "insufficient-scope", "Insufficient scope",
					"this route needs an API key with the "+string(need)+" scope"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func callerKey(ctx context.Context) APIKey {
	key, _ := ctx.Value(apiKeyContextKey{}).(APIKey)
	return key
}
