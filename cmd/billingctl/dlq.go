package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/projections"
)

// projectorsByName returns the projectors billingctl can redrive dead letters into, by name
// (their consumer group).
func projectorsByName(*pgxpool.Pool) map[string]projections.Projector {
	byName := map[string]projections.Projector{}
	for _, p := range projections.Projectors() {
		byName[p.Name()] = p
	}
	return byName
}

// lookupProjectors is projectorsByName; tests replace it.
var lookupProjectors = projectorsByName

// deadLetterGroups returns the groups (projectors) to look at: the given one, or all that have
// dead letters.
func deadLetterGroups(ctx context.Context, db *pgxpool.Pool, group string) ([]string, error) {
	if group != "" {
		return []string{group}, nil
	}
	rows, err := db.Query(ctx, `SELECT DISTINCT projector FROM projection_dead_letters ORDER BY projector`)
	if err != nil {
		return nil, fmt.Errorf("find projectors with dead letters: %w", err)
	}
	groups, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("find projectors with dead letters: %w", err)
	}
	return groups, nil
}

// dlqList runs `billingctl dlq list [--group NAME] [--limit N]`.
func dlqList(ctx context.Context, databaseURL string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	group := fs.String("group", "", "the consumer group (projector); default all that have dead letters")
	limit := fs.Int("limit", 50, "how many dead letters to show per group (oldest first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dlq list: unexpected arguments %q", fs.Args())
	}
	if *limit < 1 {
		return fmt.Errorf("dlq list: --limit must be at least 1")
	}
	db, err := eventstore.NewPool(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer db.Close()
	groups, err := deadLetterGroups(ctx, db, *group)
	if err != nil {
		return err
	}
	shown := 0
	for _, g := range groups {
		total, err := projections.CountDeadLetters(ctx, db, g)
		if err != nil {
			return err
		}
		if total == 0 {
			continue
		}
		dead, err := projections.ListDeadLetters(ctx, db, g, *limit)
		if err != nil {
			return err
		}
		if shown > 0 {
			fmt.Fprintln(out)
		}
		shown++
		fmt.Fprintf(out, "%s: %d dead letter(s)", g, total)
		if int64(len(dead)) < total {
			fmt.Fprintf(out, ", oldest %d shown", len(dead))
		}
		fmt.Fprintln(out)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tENTRY\tEVENT\tTYPE\tSTREAM\tVERSION\tDELIVERIES\tFAILED AT\tERROR")
		for _, d := range dead {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.EntryID, orNone(d.EventID), orDash(d.Type),
				orNone(d.StreamID), orZero(d.Version), d.Deliveries, d.FailedAt.UTC().Format(time.RFC3339), oneLine(d.Error, 160))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if shown == 0 {
		if *group != "" {
			fmt.Fprintf(out, "%s: no dead letters\n", *group)
		} else {
			fmt.Fprintln(out, "no dead letters")
		}
	}
	return nil
}

// dlqRedrive runs `billingctl dlq redrive [--group NAME] [ID...]`: each dead letter's event is
// loaded from the event store and applied again; those that apply leave projection_dead_letters.
func dlqRedrive(ctx context.Context, databaseURL string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dlq redrive", flag.ContinueOnError)
	group := fs.String("group", "", "the consumer group (projector); may be left out when only one has dead letters")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ids := make([]int64, fs.NArg())
	for i, arg := range fs.Args() {
		id, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || id < 1 {
			return fmt.Errorf("dlq redrive: %q is not a dead letter id (a number from the ID column of dlq list)", arg)
		}
		ids[i] = id
	}
	db, err := eventstore.NewPool(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer db.Close()
	name := *group
	if name == "" {
		groups, err := deadLetterGroups(ctx, db, "")
		if err != nil {
			return err
		}
		switch len(groups) {
		case 0:
			fmt.Fprintln(out, "no dead letters")
			return nil
		case 1:
			name = groups[0]
		default:
			return fmt.Errorf("dlq redrive: several groups have dead letters (%s): choose one with --group", strings.Join(groups, ", "))
		}
	}
	known := lookupProjectors(db)
	projector, ok := known[name]
	if !ok {
		names := make([]string, 0, len(known))
		for n := range known {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("dlq redrive: unknown projector %q (known: %s)", name, orDash(strings.Join(names, ", ")))
	}

	results, err := projections.Redrive(ctx, db, projector, ids...)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		fmt.Fprintf(out, "%s: no dead letters\n", name)
		return nil
	}
	failed := 0
	for _, r := range results {
		what := fmt.Sprintf("%d (event %s, %s v%s)", r.ID, orNone(r.EventID), orDash(r.Type), orZero(r.Version))
		switch {
		case r.Err != nil:
			failed++
			fmt.Fprintf(out, "failed    %s: %s\n", what, oneLine(r.Err.Error(), 300))
		case r.Applied:
			fmt.Fprintf(out, "applied   %s\n", what)
		default:
			fmt.Fprintf(out, "removed   %s: it was already applied\n", what)
		}
	}
	left := "?"
	if n, err := projections.CountDeadLetters(ctx, db, name); err == nil {
		left = strconv.FormatInt(n, 10)
	}
	fmt.Fprintf(out, "%s: %d redriven, %d failed; %s dead letter(s) left\n", name, len(results)-failed, failed, left)
	if failed > 0 {
		return errors.New("some dead letters could not be redriven (they stay in projection_dead_letters)")
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// orNone shows a dead letter's missing event or stream id (an entry too broken to name it).
func orNone(id uuid.UUID) string {
	if id == uuid.Nil {
		return "-"
	}
	return id.String()
}

// orZero shows a dead letter's unknown version (0).
func orZero(v int64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatInt(v, 10)
}

// oneLine keeps an error message on one table row.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
