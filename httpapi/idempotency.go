package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/eventstore"
)

// Idempotency keys: the same key and the same request within 24 hours replays the first
// response instead of running the command again. The record is written in the transaction that
// appends the command's events, so "appended" and "recorded" cannot come apart.
//
// A request holds a transaction-scoped advisory lock on its key while it runs; a concurrent
// request with the same key fails to take it and gets 409, rather than waiting and racing.
// The lock is released at commit or rollback, including when the process dies.

const (
	maxIdempotencyKeyLen = 255
	idempotencyWindow    = "24 hours"
)

var (
	errKeyInFlight = errors.New("a request with this idempotency key is in flight")
	errKeyReused   = errors.New("idempotency key was used with a different request")
)

type storedResponse struct {
	status int
	body   []byte
}

// idempotency is one request's key, scoped to the API key that sent it.
type idempotency struct {
	key         string
	apiKey      APIKey
	fingerprint [32]byte // of the request: method, route, canonical body
}

func newIdempotency(r *http.Request, canonicalBody []byte) (*idempotency, *Problem) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return nil, nil
	}
	if len(key) > maxIdempotencyKeyLen || !printableASCII(key) {
		p := problem(http.StatusBadRequest, "invalid-idempotency-key", "Invalid Idempotency-Key",
			fmt.Sprintf("the key must be 1-%d printable ASCII characters", maxIdempotencyKeyLen))
		p.Errors = []FieldError{{Pointer: "Idempotency-Key", Detail: p.Detail}}
		return nil, p
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", r.Method, r.URL.Path)
	h.Write(canonicalBody)
	var fp [32]byte
	copy(fp[:], h.Sum(nil))
	return &idempotency{key: key, apiKey: callerKey(r.Context()), fingerprint: fp}, nil
}

// claim takes the key's lock for this transaction and returns the stored response if the same
// request already completed. It fails with errKeyInFlight or errKeyReused.
func (i *idempotency) claim(ctx context.Context, tx pgx.Tx) (*storedResponse, error) {
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended($1::text || ':' || $2, 0))`,
		i.apiKey.ID, i.key).Scan(&locked); err != nil {
		return nil, fmt.Errorf("lock idempotency key: %w", err)
	}
	if !locked {
		return nil, errKeyInFlight
	}
	var fp []byte
	var stored storedResponse
	err := tx.QueryRow(ctx, `SELECT request_hash, response_status, response_body FROM idempotency_keys
		WHERE api_key_id = $1 AND key = $2 AND created_at > now() - interval '`+idempotencyWindow+`'`,
		i.apiKey.ID, i.key).Scan(&fp, &stored.status, &stored.body)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read idempotency key: %w", err)
	case !bytes.Equal(fp, i.fingerprint[:]):
		return nil, errKeyReused
	}
	return &stored, nil
}

// record stores the response in the command's transaction, replacing an expired record.
func (i *idempotency) record(ctx context.Context, q eventstore.Querier, resp storedResponse) error {
	_, err := q.Exec(ctx, `INSERT INTO idempotency_keys (api_key_id, key, request_hash, response_status, response_body)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (api_key_id, key) DO UPDATE SET request_hash = excluded.request_hash,
			response_status = excluded.response_status, response_body = excluded.response_body,
			created_at = excluded.created_at`,
		i.apiKey.ID, i.key, i.fingerprint[:], resp.status, resp.body)
	if err != nil {
		return fmt.Errorf("record idempotency key: %w", err)
	}
	return nil
}

// PurgeIdempotencyKeys deletes records older than the replay window.
func PurgeIdempotencyKeys(ctx context.Context, q eventstore.Querier) (int64, error) {
	tag, err := q.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at <= now() - interval '`+idempotencyWindow+`'`)
	return tag.RowsAffected(), err
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
