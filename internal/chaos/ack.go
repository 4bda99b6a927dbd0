package chaos

import (
	"encoding/json"
	"time"
)

// Ack is one request the service acknowledged: a 2xx answer (or a 402 decline, which the
// service also records), as the client saw it. The load generator records one per
// idempotency key, the last answer it got for that key; the checker holds the store to it.
type Ack struct {
	Key    string          // the Idempotency-Key sent
	Method string          // "POST"
	Path   string          // e.g. "/v1/subscriptions/{id}/seats", with the id filled in
	Body   json.RawMessage // the request body sent
	Status int             // the HTTP status answered
	Answer json.RawMessage // the response body
	At     time.Time       // when the answer arrived (wall clock)
}

// Violation is one thing the checker found wrong: which check, and what it saw.
type Violation struct {
	Check  string // e.g. "acked-in-store", "idempotency", "version-gap", "read-model", "stream-once", "saga"
	Detail string
}

// Target is a running service and its backing stores, as the checker needs them.
type Target struct {
	DatabaseURL string   // the service's own database
	RedisURL    string   // the Redis it publishes to
	RedisPrefix string   // its REDIS_PREFIX
	APIURLs     []string // every billingd's base URL, e.g. http://127.0.0.1:41234
	APIKey      string   // an admin key
	// RedisEmptiedAt is set when the scenario emptied Redis: events published before it may be
	// missing from the streams (never twice there).
	RedisEmptiedAt time.Time
	// StreamPartitions is its STREAM_PARTITIONS; 0 means billingd's default, 8.
	StreamPartitions int
}
