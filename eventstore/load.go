package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// LoadOptions bound how much of a stream Load returns. The zero value loads everything.
type LoadOptions struct {
	AfterVersion int64     // only events with a greater version (to continue from a snapshot)
	UpToVersion  int64     // if > 0, only events up to and including this version
	Until        time.Time // if not zero, only events that occurred at or before this time
}

// Load returns a stream's events in version order.
func Load(ctx context.Context, q Querier, streamID uuid.UUID, opts LoadOptions) ([]Event, error) {
	upTo := opts.UpToVersion
	if upTo <= 0 {
		upTo = 1<<63 - 1
	}
	var until *time.Time
	if !opts.Until.IsZero() {
		until = &opts.Until
	}
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE stream_id = $1 AND version > $2 AND version <= $3
		  AND ($4::timestamptz IS NULL OR occurred_at <= $4)
		ORDER BY version`, streamID, opts.AfterVersion, upTo, until)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", streamID, err)
	}
	events, err := collectEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", streamID, err)
	}
	return events, nil
}
