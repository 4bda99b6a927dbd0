package migrations_test

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/migrations"
)

// TestDownUndoesUp reverts every migration of a migrated database and applies them again: the
// down files must leave nothing of the schema behind, and the up files must then rebuild the same
// schema, so that an operator rolling back a release can roll forward again.
func TestDownUndoesUp(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	ups, err := fs.Glob(migrations.Files, "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	migrated := schema(t, conn)
	if len(migrated) == 0 {
		t.Fatal("the migrated test database has no schema")
	}

	if err := migrations.Down(url, len(ups)); err != nil {
		t.Fatalf("down %d: %v", len(ups), err)
	}
	if left := schema(t, conn); len(left) != 0 {
		t.Errorf("after reverting every migration, left behind:\n%s", strings.Join(left, "\n"))
	}

	if err := migrations.Up(url); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if again := schema(t, conn); strings.Join(again, "\n") != strings.Join(migrated, "\n") {
		t.Errorf("schema after down and up differs:\n got %v\nwant %v", again, migrated)
	}
}

// schema describes the public schema's columns, indexes, constraints, functions and triggers,
// except golang-migrate's own bookkeeping table, one sorted line each.
func schema(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name <> 'schema_migrations'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint
WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'schema_migrations'
UNION ALL
SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(fmt.Errorf("read schema: %w", err))
	}
	return lines
}
