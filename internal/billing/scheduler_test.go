package billing

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRunDueLeavesNothingDueInFlight: when RunDue returns, nothing due by the clock is left, not
// even work this process's scheduler loop took meanwhile. POST /v1/test/clock answers when its
// RunDue returns and promises that everything that came due was worked through; a loop still
// renewing a subscription behind that answer would let the client's next command see the old
// period, and the same calls give different histories from run to run.
func TestRunDueLeavesNothingDueInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 12 {
		e.create(fmt.Sprintf("cus_%d", i), "pro_monthly", 1, "pm_card_ok", 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	loop := make(chan struct{})
	go func() { defer close(loop); e.svc.Run(ctx, time.Millisecond) }()
	defer func() { cancel(); <-loop }()

	for month := range 6 {
		now := start.AddDate(0, month, 1)
		e.clock.Set(now)
		if _, err := e.svc.RunDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		var due int
		if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM billing_schedule WHERE due_at <= $1`, now).Scan(&due); err != nil {
			t.Fatal(err)
		}
		if due != 0 {
			t.Fatalf("month %d: RunDue returned with %d rows still due (held by the scheduler loop)", month, due)
		}
	}
}
