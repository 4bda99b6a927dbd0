package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// demoTally counts what the walk asked and how the service answered. Refusals (402, 409, 422)
// are counted, not failures: a random walk asks for things a subscription's state forbids, and
// the service saying so is the API working.
type demoTally struct {
	arrived    int
	clockMoves int
	processed  int // billing steps the clock moves worked through
	replayed   int
	kinds      []string // in the order first sent
	ok         map[string]int
	other      map[string]map[string]int // kind → "409 period-ended" → count
}

func newDemoTally() demoTally {
	return demoTally{ok: map[string]int{}, other: map[string]map[string]int{}}
}

func (t *demoTally) count(kind string, a answer) {
	if !slices.Contains(t.kinds, kind) {
		t.kinds = append(t.kinds, kind)
	}
	if a.replayed {
		t.replayed++
	}
	if a.status == 200 || a.status == 201 {
		t.ok[kind]++
		return
	}
	if t.other[kind] == nil {
		t.other[kind] = map[string]int{}
	}
	label := a.refused()
	if a.status == 202 {
		label = "202 upgrade still running"
	}
	t.other[kind][label]++
}

// logEnd is the position of the last event in the global log (0 when it is empty).
func (w *demoWalk) logEnd(ctx context.Context) (int64, error) {
	var pos int64
	for {
		var page eventPageJSON
		if err := w.api.get(ctx, fmt.Sprintf("/v1/events?limit=1000&after_position=%d", pos), &page); err != nil {
			return 0, err
		}
		pos = page.NextAfterPosition
		if !page.HasMore {
			return pos, nil
		}
	}
}

// countEvents counts the events after position from by type, and subscription.canceled by
// reason and subscription.plan_changed by direction (as "type:reason").
func (w *demoWalk) countEvents(ctx context.Context, from int64) (map[string]int, error) {
	counts := map[string]int{}
	for pos := from; ; {
		var page eventPageJSON
		if err := w.api.get(ctx, fmt.Sprintf("/v1/events?limit=1000&after_position=%d", pos), &page); err != nil {
			return nil, err
		}
		for _, e := range page.Data {
			counts[e.Type]++
			if detail := e.Data.Reason + e.Data.Direction; detail != "" {
				counts[e.Type+":"+detail]++
			}
		}
		pos = page.NextAfterPosition
		if !page.HasMore {
			return counts, nil
		}
	}
}

// settledSummaries reads the dashboard until two reads in a row agree (for up to 10 seconds):
// the dashboard reads read models, which trail the last command by the projectors' lag.
func (w *demoWalk) settledSummaries(ctx context.Context) ([]summaryJSON, error) {
	last, err := w.summaries(ctx)
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		var next []summaryJSON
		if next, err = w.summaries(ctx); err == nil && slices.Equal(next, last) {
			return next, nil
		}
		last = next
	}
	return last, err
}

func (w *demoWalk) summary(ctx context.Context) error {
	if _, err := w.awaitReadModels(ctx); err != nil {
		return err
	}
	sums, err := w.settledSummaries(ctx)
	if err != nil {
		return err
	}
	events, err := w.countEvents(ctx, w.fromPosition)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w.out, 0, 0, 2, ' ', 0)
	source := "this run's"
	if !w.resumeUntil.IsZero() {
		source = "all" // a resumed run cannot tell where the interrupted one began in the log
	}
	fmt.Fprintf(tw, "\nthe year in events (%s, from GET /v1/events)\n", source)
	for _, row := range []struct {
		label string
		n     int
		note  string
	}{
		{"subscriptions created", events["subscription.created"], ""},
		{"upgrades", events["subscription.plan_changed:upgrade"], "plan changed up, paid through the upgrade saga"},
		{"downgrades", events["subscription.plan_change_scheduled"] + events["subscription.plan_changed:downgrade"],
			"scheduled for the period end, or at once in a trial"},
		{"seat changes", events["subscription.seats_changed"], ""},
		{"declined upgrades", events["subscription.upgrade_failed"], "payment declined; nothing changed"},
		{"renewals", events["subscription.renewed"], ""},
		{"payments succeeded", events["invoice.payment_succeeded"], ""},
		{"payments failed", events["invoice.payment_failed"], ""},
		{"went past due", events["subscription.past_due"], ""},
		{"recovered", events["subscription.payment_recovered"], "paid after a failed payment"},
		{"pauses / resumes", events["subscription.paused"], fmt.Sprintf("%d resumed", events["subscription.resumed"])},
		{"cancellations", events["subscription.canceled"], fmt.Sprintf("%d requested, %d for nonpayment",
			events["subscription.canceled:requested"], events["subscription.canceled:nonpayment"])},
	} {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", row.label, row.n, row.note)
	}

	fmt.Fprintf(tw, "\nrequests sent (refusals are the service's answers to a random walk, not errors)\n")
	fmt.Fprintf(tw, "  request\tok\tother answers\n")
	for _, kind := range w.tally.kinds {
		var other []string
		for _, label := range slices.Sorted(maps.Keys(w.tally.other[kind])) {
			other = append(other, fmt.Sprintf("%s ×%d", label, w.tally.other[kind][label]))
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", kind, w.tally.ok[kind], strings.Join(other, ", "))
	}
	fmt.Fprintf(tw, "  clock moves\t%d\t%d billing steps worked through on the way\n", w.tally.clockMoves, w.tally.processed)
	if w.tally.replayed > 0 {
		fmt.Fprintf(tw, "  replayed\t%d\tanswered from idempotency records of an earlier run\n", w.tally.replayed)
	}

	fmt.Fprintf(tw, "\nfinal (GET /v1/dashboard/summary)\n")
	for i, s := range sums {
		fmt.Fprintf(tw, "  %s\tMRR %s\tARR %s\t%d subscriptions: %d active, %d trialing, %d past due, %d paused, %d canceled\n",
			w.currencies[i], money(s.MRR), money(12*s.MRR), s.subscriptions(), s.Active, s.Trialing, s.PastDue, s.Paused, s.Canceled)
	}
	return tw.Flush()
}
