package eventstore

import (
	"github.com/jackc/pgx/v5/pgconn"

	"errors"
	"fmt"

	"github.com/google/uuid"
)

// ErrConcurrency matches every *ConcurrencyError with errors.Is.
var ErrConcurrency = errors.New("concurrency conflict")

// ConcurrencyError says a stream was not at the version the appender expected: someone else
// appended first. The caller reloads the stream and decides again.
type ConcurrencyError struct {
	StreamID uuid.UUID
	Expected int64
	Actual   int64 // -1 when another writer won the race at insert time and the version is unknown
}

func (e *ConcurrencyError) Error() string {
	if e.Actual < 0 {
		return fmt.Sprintf("stream %s: expected version %d, but another writer appended first", e.StreamID, e.Expected)
	}
	return fmt.Sprintf("stream %s: expected version %d, found %d", e.StreamID, e.Expected, e.Actual)
}

func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrency }

// Retryable reports whether err means a transaction lost a race and can simply be run again: a
// *ConcurrencyError, or PostgreSQL's deadlock or serialization failure on any of its statements.
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, ErrConcurrency) ||
		errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// ErrDuplicateEvent means an event with the same event_id is already stored.
var ErrDuplicateEvent = errors.New("duplicate event id")
