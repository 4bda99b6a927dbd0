package billing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrClockBackwards is a test clock asked to move back: the event history must stay in order.
var ErrClockBackwards = errors.New("the clock only moves forward")

// TestClock is the service clock in test mode (BILLING_TEST_CLOCK=true), like a payment
// provider's test clock: frozen until moved, so a test moves subscriptions through months of
// billing in seconds and every figure is reproducible. It lives in the database, so every
// billingd process of a deployment reads the same time.
type TestClock struct {
	db *pgxpool.Pool
	mu sync.Mutex
	at time.Time // the last time read, answered if the database cannot be
}

// NewTestClock returns the shared test clock, starting it at start unless it was started before.
func NewTestClock(ctx context.Context, db *pgxpool.Pool, start time.Time) (*TestClock, error) {
	_, err := db.Exec(ctx, `INSERT INTO test_clock (now) VALUES ($1) ON CONFLICT DO NOTHING`, start.UTC().Truncate(time.Second))
	if err != nil {
		return nil, fmt.Errorf("start test clock: %w", err)
	}
	c := &TestClock{db: db}
	c.Now()
	return c, nil
}

// Now reads the clock.
func (c *TestClock) Now() time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var now time.Time
	err := c.db.QueryRow(ctx, `SELECT now FROM test_clock`).Scan(&now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.at = now.UTC()
	}
	return c.at
}

// Set moves the clock to t. Time never runs backwards: the event history must stay in order.
func (c *TestClock) Set(t time.Time) error {
	t = t.UTC().Truncate(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tag, err := c.db.Exec(ctx, `UPDATE test_clock SET now = $1 WHERE now <= $1`, t)
	if err != nil {
		return fmt.Errorf("set test clock: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s is before %s", ErrClockBackwards, t.Format(time.RFC3339), c.Now().Format(time.RFC3339))
	}
	c.mu.Lock()
	c.at = t
	c.mu.Unlock()
	return nil
}
