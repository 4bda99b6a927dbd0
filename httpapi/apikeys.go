package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

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

// keyCache remembers, for ttl, the keys requests authenticated with, so that most requests cost
// no query to authenticate: a round trip and an index lookup per request are a good part of what
// a batched create costs the database. The price is that a revoked key keeps working for up to
// ttl in a process that saw it. Unknown secrets are never remembered, so guessing clients cannot
// fill the cache; its size is bounded by the number of live keys.
type keyCache struct {
	ttl  time.Duration
	mu   sync.Mutex
	keys map[[32]byte]cachedKey
}

type cachedKey struct {
	key     APIKey
	expires time.Time
}

func newKeyCache(ttl time.Duration) *keyCache {
	return &keyCache{ttl: ttl, keys: map[[32]byte]cachedKey{}}
}

// lookup is lookupAPIKey through the cache.
func (c *keyCache) lookup(ctx context.Context, q eventstore.Querier, secret string) (APIKey, error) {
	hash, now := hashSecret(secret), time.Now()
	c.mu.Lock()
	cached, ok := c.keys[hash]
	c.mu.Unlock()
	if ok && now.Before(cached.expires) {
		return cached.key, nil
	}
	key, err := lookupAPIKey(ctx, q, secret)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.keys[hash] = cachedKey{key: key, expires: now.Add(c.ttl)}
	} else {
		delete(c.keys, hash)
	}
	return key, err
}
