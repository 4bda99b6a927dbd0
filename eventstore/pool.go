package eventstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxuuid "github.com/vgarvardt/pgx-google-uuid/v5"
)

// PoolConfig parses a database URL into the configuration every pool of the service uses: its
// connections encode and decode uuid.UUID (the id of every stream, event and read-model row) in
// PostgreSQL's binary form. Without it pgx takes uuid.UUID for a driver.Valuer and, for every
// element of every uuid array, formats it as text and plans the encoding again: 15% of
// billingd's CPU under saturated creates.
func PoolConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		pgxuuid.Register(conn.TypeMap())
		return nil
	}
	return cfg, nil
}

// NewPool connects a pool configured by PoolConfig.
func NewPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := PoolConfig(url)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return pool, nil
}
