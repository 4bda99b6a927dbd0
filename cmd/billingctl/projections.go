package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/migrations"
	"github.com/billing-oss/billing/projections"
)

// rebuildProjections runs `billingctl projections rebuild NAME|all`: each named read model is
// rebuilt from the event store into fresh tables and swapped in (projections.Rebuild), printing
// its progress, time and throughput.
func rebuildProjections(ctx context.Context, databaseURL string, args []string, out io.Writer) error {
	var names []string
	for _, p := range projections.Projectors() {
		names = append(names, p.Name())
	}
	if len(args) != 1 {
		return fmt.Errorf("projections rebuild: name one projector (%s) or all", strings.Join(names, ", "))
	}
	var remaining []projections.Projector
	if args[0] == "all" {
		remaining = projections.Projectors()
	} else {
		p, ok := projections.ProjectorByName(args[0])
		if !ok {
			return fmt.Errorf("projections rebuild: unknown projector %q (known: %s)", args[0], strings.Join(names, ", "))
		}
		remaining = []projections.Projector{p}
	}
	if err := migrations.Up(databaseURL); err != nil {
		return err
	}
	db, err := eventstore.NewPool(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer db.Close()

	for _, p := range remaining {
		fmt.Fprintf(out, "rebuilding %s…\n", p.Name())
		lastReport := time.Now()
		stats, err := projections.Rebuild(ctx, db, p, projections.RebuildOptions{
			Progress: func(pr projections.RebuildProgress) {
				if time.Since(lastReport) >= 5*time.Second {
					lastReport = time.Now()
					fmt.Fprintf(out, "  %s: %d events in %s\n", p.Name(), pr.Events, pr.Elapsed.Round(time.Millisecond))
				}
			},
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "rebuilt %s: %d events over %d streams in %s (%.0f events/s); swapped in after catching up %d events, blocking the live projector for %s\n",
			stats.Projector, stats.Events, stats.Streams, stats.Duration.Round(time.Millisecond), stats.EventsPerSecond(),
			stats.CaughtUp, stats.Swap.Round(time.Millisecond))
	}
	return nil
}
