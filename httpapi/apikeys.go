package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/eventstore"
)

// Scope is what an API key may do. Each scope includes the ones below it.
type Scope string

const (
	ScopeRead  Scope = "read"  // GET routes
	ScopeWrite Scope = "write" // plus commands
	ScopeAdmin Scope = "admin" // plus administration (test clock)
)

func (s Scope) rank() int {
	switch s {
	case ScopeRead:
		return 1
	case ScopeWrite:
		return 2
	case ScopeAdmin:
		return 3
	}
	return 0
}

// Includes reports whether a key with scope s may use a route that needs scope need.
func (s Scope) Includes(need Scope) bool { return s.rank() >= need.rank() && need.rank() > 0 }

// ParseScope validates a scope name.
func ParseScope(s string) (Scope, error) {
	if Scope(s).rank() == 0 {
		return "", fmt.Errorf("unknown scope %q: use read, write or admin", s)
	}
	return Scope(s), nil
}

// APIKey is an authenticated caller.
type APIKey struct {
	ID    uuid.UUID
	Name  string
	Scope Scope
}

var keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// CreateAPIKey stores a new key and returns its secret, which is not stored and cannot be shown
// again. The secret carries 256 random bits, so a fast hash (SHA-256) is enough to protect it at
// rest: there is nothing to brute-force that a slow hash would slow down.
func CreateAPIKey(ctx context.Context, q eventstore.Querier, name string, scope Scope) (APIKey, string, error) {
	if !keyNamePattern.MatchString(name) {
		return APIKey{}, "", fmt.Errorf("invalid key name %q: 1-64 letters, digits, _ . @ -", name)
	}
	if scope.rank() == 0 {
		return APIKey{}, "", fmt.Errorf("unknown scope %q", scope)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := "bk_" + base64.RawURLEncoding.EncodeToString(raw)
	key := APIKey{ID: uuid.Must(uuid.NewV7()), Name: name, Scope: scope}
	hash := hashSecret(secret)
	if _, err := q.Exec(ctx, `INSERT INTO api_keys (id, name, scope, secret_hash) VALUES ($1, $2, $3, $4)`,
		key.ID, key.Name, string(key.Scope), hash[:]); err != nil {
		return APIKey{}, "", fmt.Errorf("create api key: %w", err)
	}
	return key, secret, nil
}

var errUnknownKey = errors.New("unknown or revoked api key")

// lookupAPIKey finds the live key whose secret this is.
func lookupAPIKey(ctx context.Context, q eventstore.Querier, secret string) (APIKey, error) {
	hash := hashSecret(secret)
	var key APIKey
	var scope string
	err := q.QueryRow(ctx, `SELECT id, name, scope FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL`,
		hash[:]).Scan(&key.ID, &key.Name, &scope)
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, errUnknownKey
	}
	key.Scope = Scope(scope)
	return key, err
}

func hashSecret(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }
