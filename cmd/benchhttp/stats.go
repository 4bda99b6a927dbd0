package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// work is a snapshot of the database's cumulative statistics for the run's database: commits,
// and rows written per table.
type work struct {
	commits int64
	rows    map[string][3]int64 // table → inserted, updated, deleted
}

// databaseWork reads the statistics, after waiting for the server to publish them (backends
// report theirs at most once a second).
func (s *server) databaseWork(ctx context.Context) (work, error) {
	time.Sleep(1500 * time.Millisecond)
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return work{}, err
	}
	defer conn.Close(ctx)
	w := work{rows: map[string][3]int64{}}
	if err := conn.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&w.commits); err != nil {
		return work{}, fmt.Errorf("pg_stat_database: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables`)
	if err != nil {
		return work{}, fmt.Errorf("pg_stat_user_tables: %w", err)
	}
	var name string
	var ins, upd, del int64
	_, err = pgx.ForEachRow(rows, []any{&name, &ins, &upd, &del}, func() error {
		w.rows[name] = [3]int64{ins, upd, del}
		return nil
	})
	return w, err
}

// printWork writes what the database did per create between two snapshots.
func printWork(out io.Writer, before, after work, creates float64) {
	if creates < 1 {
		return
	}
	fmt.Fprintf(out, "  database work per saturated create (command, relay and projectors; all connections): %.2f commits;",
		float64(after.commits-before.commits)/creates)
	var names []string
	for name := range after.rows {
		names = append(names, name)
	}
	slices.Sort(names)
	var total float64
	for _, name := range names {
		a, b := after.rows[name], before.rows[name]
		n := float64(a[0]-b[0]+a[1]-b[1]+a[2]-b[2]) / creates
		if n >= 0.05 {
			fmt.Fprintf(out, " %s %.2f", name, n)
		}
		total += n
	}
	fmt.Fprintf(out, "; %.1f rows written in all\n", total)
}
