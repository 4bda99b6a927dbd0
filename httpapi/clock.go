package httpapi

import (
	"fmt"
	"sync"
	"time"

	"github.com/billing-oss/billing/internal/billing"
)

// Clock is where every domain time comes from.
type Clock interface {
	Now() time.Time
}

// SettableClock is a test clock that can be moved forward.
type SettableClock interface {
	Clock
	Set(t time.Time) error // billing.ErrClockBackwards for a time before the clock's
}

// SystemClock is the real time.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now().UTC() }

// TestClock is a frozen clock that only moves when told to, like a payment provider's test
// clock: a test can move a subscription through months of billing in seconds, and every result
// is reproducible. It is process-local.
type TestClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewTestClock returns a clock frozen at start.
func NewTestClock(start time.Time) *TestClock {
	return &TestClock{now: start.UTC().Truncate(time.Second)}
}

func (c *TestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t. Time never runs backwards: the event history must stay in order.
func (c *TestClock) Set(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t = t.UTC().Truncate(time.Second)
	if t.Before(c.now) {
		return fmt.Errorf("%w: %s is before %s", billing.ErrClockBackwards, t.Format(time.RFC3339), c.now.Format(time.RFC3339))
	}
	c.now = t
	return nil
}
