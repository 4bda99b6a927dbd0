// Package migrations holds the database schema as golang-migrate SQL files, embedded in the
// binaries so that billingd and billingctl always migrate to the schema they were built with.
package migrations

import (
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers the pgx5:// driver
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// Files holds the migration files.
//
//go:embed *.sql
var Files embed.FS

// Up applies every migration not yet applied. golang-migrate holds an advisory lock while it
// runs, so several processes starting at once are safe.
func Up(databaseURL string) error {
	return run(databaseURL, func(m *migrate.Migrate) error { return m.Up() })
}

// Down reverts the last `steps` migrations.
func Down(databaseURL string, steps int) error {
	return run(databaseURL, func(m *migrate.Migrate) error { return m.Steps(-steps) })
}

func run(databaseURL string, do func(*migrate.Migrate) error) (err error) {
	src, err := iofs.New(Files, ".")
	if err != nil {
		return fmt.Errorf("open embedded migrations: %w", err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, driverURL(databaseURL))
	if err != nil {
		return fmt.Errorf("open migrations: %w", err)
	}
	defer func() {
		srcErr, dbErr := m.Close()
		err = errors.Join(err, srcErr, dbErr)
	}()
	if err := do(m); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// driverURL turns a postgres:// URL into the pgx5:// form golang-migrate's pgx driver expects.
func driverURL(databaseURL string) string {
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		if rest, ok := strings.CutPrefix(databaseURL, scheme); ok {
			return "pgx5://" + rest
		}
	}
	return databaseURL
}
