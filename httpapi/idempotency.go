package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
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

// claimed is what claimKeys found for one key: the response stored for the same request, or
// errKeyInFlight or errKeyReused; neither means the request is new.
type claimed struct {
	stored *storedResponse
	err    error
}

// claimKeys takes the keys' locks for this transaction and returns, for each key in order, the
// stored response if the same request already completed (see queueClaimKeys).
func claimKeys(ctx context.Context, tx pgx.Tx, keys []*idempotency) ([]claimed, error) {
	b := &pgx.Batch{}
	out := queueClaimKeys(b, keys)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// queueClaimKeys queues on b what claimKeys does, and returns what it will have found once b is
// sent: for each key in order, the stored response if the same request already completed. A key
// given twice is in flight the second time: the first holds it. One statement takes every lock,
// and the records are read by a second one, after the locks are held: a request that committed
// meanwhile is then visible. Both travel in b's one round trip.
func queueClaimKeys(b *pgx.Batch, keys []*idempotency) []claimed {
	out := make([]claimed, len(keys))
	var apiKeys []uuid.UUID
	var names []string
	var index []int // of each locked key in keys
	first := map[[2]string]bool{}
	for i, k := range keys {
		id := [2]string{k.apiKey.ID.String(), k.key}
		if first[id] {
			out[i].err = errKeyInFlight
			continue
		}
		first[id] = true
		apiKeys, names, index = append(apiKeys, k.apiKey.ID), append(names, k.key), append(index, i)
	}
	if len(index) == 0 {
		return out
	}
	b.Queue(`SELECT k.ord, pg_try_advisory_xact_lock(hashtextextended(k.api_key::text || ':' || k.key, 0))
		FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS k(api_key, key, ord)`, apiKeys, names).Query(func(rows pgx.Rows) error {
		var ord int
		var locked bool
		if _, err := pgx.ForEachRow(rows, []any{&ord, &locked}, func() error {
			if !locked {
				out[index[ord-1]].err = errKeyInFlight
			}
			return nil
		}); err != nil {
			return fmt.Errorf("lock idempotency keys: %w", err)
		}
		return nil
	})
	// One primary-key probe per key (LATERAL, kept from being flattened into a join by its
	// LIMIT): joined plainly, the planner may scan every record of the window through the
	// created_at index, and nearly all records are recent.
	b.Queue(`SELECT k.ord, r.request_hash, r.response_status, r.response_body
		FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS k(api_key, key, ord),
		LATERAL (SELECT request_hash, response_status, response_body, created_at FROM idempotency_keys
		         WHERE api_key_id = k.api_key AND key = k.key LIMIT 1) r
		WHERE r.created_at > now() - interval '`+idempotencyWindow+`'`, apiKeys, names).Query(func(rows pgx.Rows) error {
		var ord int
		var fp []byte
		var stored storedResponse
		if _, err := pgx.ForEachRow(rows, []any{&ord, &fp, &stored.status, &stored.body}, func() error {
			i := index[ord-1]
			switch {
			case out[i].err != nil: // in flight: someone else holds the key
			case !bytes.Equal(fp, keys[i].fingerprint[:]):
				out[i].err = errKeyReused
			default:
				out[i].stored = &storedResponse{status: stored.status, body: bytes.Clone(stored.body)}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("read idempotency keys: %w", err)
		}
		return nil
	})
	return out
}

// queueRecordKeys queues on b the storing of each key's response in the command's transaction, replacing expired
// records: one statement for all of them.
func queueRecordKeys(b *pgx.Batch, keys []*idempotency, resps []storedResponse) {
	if len(keys) == 0 {
		return
	}
	apiKeys, names := make([]uuid.UUID, len(keys)), make([]string, len(keys))
	hashes, statuses, bodies := make([][]byte, len(keys)), make([]int32, len(keys)), make([][]byte, len(keys))
	for i, k := range keys {
		apiKeys[i], names[i], hashes[i] = k.apiKey.ID, k.key, k.fingerprint[:]
		statuses[i], bodies[i] = int32(resps[i].status), resps[i].body
	}
	b.Queue(`INSERT INTO idempotency_keys (api_key_id, key, request_hash, response_status, response_body)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[], $5::bytea[])
		ON CONFLICT (api_key_id, key) DO UPDATE SET request_hash = excluded.request_hash,
			response_status = excluded.response_status, response_body = excluded.response_body,
			created_at = excluded.created_at`,
		apiKeys, names, hashes, statuses, bodies)
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
