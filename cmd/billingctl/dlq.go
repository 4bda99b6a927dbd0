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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

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

// pipelineEnv reads the Redis settings billingd uses: REDIS_URL, REDIS_PREFIX, STREAM_PARTITIONS.
func pipelineEnv(getenv func(string) string) (*redis.Client, projections.Streams, error) {
	url := getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, projections.Streams{}, fmt.Errorf("REDIS_URL: %w", err)
	}
	streams := projections.Streams{Prefix: "billing:", Partitions: 8}
	if p := getenv("REDIS_PREFIX"); p != "" {
		streams.Prefix = p
	}
	if v := getenv("STREAM_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1024 {
			return nil, projections.Streams{}, fmt.Errorf("STREAM_PARTITIONS %q: want a number from 1 to 1024", v)
		}
		streams.Partitions = n
	}
	return redis.NewClient(opts), streams, nil
}

// deadLetterGroups returns the groups that have a dead-letter stream: the given one, or all.
func deadLetterGroups(ctx context.Context, rdb *redis.Client, streams projections.Streams, group string) ([]string, error) {
	if group != "" {
		return []string{group}, nil
	}
	prefix := streams.DeadLetterKey("")
	var groups []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		groups = append(groups, strings.TrimPrefix(iter.Val(), prefix))
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("find dead-letter streams: %w", err)
	}
	slices.Sort(groups)
	return groups, nil
}

// dlqList runs `billingctl dlq list [--group NAME] [--limit N]`.
func dlqList(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
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
	rdb, streams, err := pipelineEnv(getenv)
	if err != nil {
		return err
	}
	defer rdb.Close()
	groups, err := deadLetterGroups(ctx, rdb, streams, *group)
	if err != nil {
		return err
	}
	shown := 0
	for _, g := range groups {
		total, err := rdb.XLen(ctx, streams.DeadLetterKey(g)).Result()
		if err != nil {
			return fmt.Errorf("dead letters of %s: %w", g, err)
		}
		if total == 0 {
			continue
		}
		dead, err := projections.ListDeadLetters(ctx, rdb, streams, g, *limit)
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
		fmt.Fprintln(tw, "ID\tEVENT\tTYPE\tSTREAM\tVERSION\tDELIVERIES\tFAILED AT\tERROR")
		for _, d := range dead {
			failedAt := "-"
			if !d.FailedAt.IsZero() {
				failedAt = d.FailedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.ID, d.EventID, orDash(d.Type), d.StreamID,
				d.Version, d.Deliveries, failedAt, oneLine(d.Error, 160))
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
// loaded from the event store and applied again; those that apply leave the dead-letter stream.
func dlqRedrive(ctx context.Context, databaseURL string, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("dlq redrive", flag.ContinueOnError)
	group := fs.String("group", "", "the consumer group (projector); may be left out when only one has dead letters")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ids := fs.Args()
	rdb, streams, err := pipelineEnv(getenv)
	if err != nil {
		return err
	}
	defer rdb.Close()
	name := *group
	if name == "" {
		groups, err := deadLetterGroups(ctx, rdb, streams, "")
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
	db, err := eventstore.NewPool(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer db.Close()
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

	results, err := projections.Redrive(ctx, db, rdb, streams, projector, ids...)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		fmt.Fprintf(out, "%s: no dead letters\n", name)
		return nil
	}
	failed := 0
	for _, r := range results {
		what := fmt.Sprintf("%s (event %s, %s v%d)", r.ID, r.EventID, orDash(r.Type), r.Version)
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
	left, err := rdb.XLen(ctx, streams.DeadLetterKey(name)).Result()
	if err != nil {
		left = -1
	}
	fmt.Fprintf(out, "%s: %d redriven, %d failed; %d dead letter(s) left\n", name, len(results)-failed, failed, left)
	if failed > 0 {
		return errors.New("some dead letters could not be redriven (they stay in the dead-letter stream)")
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps an error message on one table row.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
