package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// The names of the checks, as Violation.Check.
const (
	CheckAckedInStore = "acked-in-store"
	CheckIdempotency  = "idempotency"
	CheckVersionGap   = "version-gap"
	CheckReadModel    = "read-model"
	CheckStreamOnce   = "stream-once"
	CheckSaga         = "saga"
	CheckLedger       = "ledger"
	// CheckReadable: a stored event that does not decode; the folds of its stream skip it, so
	// other checks of that stream may report consequences too.
	CheckReadable = "readable"
)

// Check holds the service's stores to what it acknowledged (acks) and to each other. Call it
// after the load stopped and the pipeline settled (relay and projector lag 0, no saga running):
// every finding is a Violation; the error only says the checker could not look (a store
// unreachable, an answer it could not read).
func Check(ctx context.Context, t Target, acks []Ack) ([]Violation, error) {
	db, err := eventstore.NewPool(ctx, t.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("check: connect to the database: %w", err)
	}
	defer db.Close()
	opts, err := redis.ParseURL(t.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("check: redis url: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	s, err := loadStore(ctx, db)
	if err != nil {
		return nil, err
	}
	c := &checker{target: t, db: db, rdb: rdb, store: s}
	for _, run := range []func(context.Context) error{
		func(context.Context) error { c.versionGaps(); return nil },
		func(ctx context.Context) error { return c.ackedInStore(ctx, acks) },
		func(context.Context) error { c.idempotency(); return nil },
		func(context.Context) error { c.ledger(); return nil },
		c.readModels,
		c.streamOnce,
		c.sagas,
	} {
		if err := run(ctx); err != nil {
			return c.found, err
		}
	}
	return c.found, nil
}

type checker struct {
	target Target
	db     *pgxpool.Pool
	rdb    *redis.Client
	store  *store
	found  []Violation
}

func (c *checker) report(check, format string, args ...any) {
	c.found = append(c.found, Violation{Check: check, Detail: fmt.Sprintf(format, args...)})
}

// store is the whole event store read at once, with every aggregate folded independently of the
// service's own loading code paths (no snapshots, no read models): the truth the checks compare
// everything else with.
type store struct {
	events    []eventstore.Event // ordered by stream, then version
	streams   map[uuid.UUID][]eventstore.Event
	decoded   map[uuid.UUID]domain.Event // by event id; missing for an unreadable event
	subs      map[uuid.UUID]domain.Subscription
	invoices  map[uuid.UUID]domain.Invoice
	upgrades  map[uuid.UUID]domain.Upgrade
	customers map[uuid.UUID]domain.Customer // by stream id
	order     []uuid.UUID                   // stream ids, sorted, for stable reports
	bad       []string                      // unreadable events
}

// loadStore reads every event with a plain query rather than eventstore.ReadAll: ReadAll holds
// back events of transactions newer than the cluster's oldest running one, and other databases'
// transactions on a shared server must not hide events from the checker.
func loadStore(ctx context.Context, db *pgxpool.Pool) (*store, error) {
	rows, err := db.Query(ctx, `SELECT global_position, transaction_id::text::bigint, stream_id, stream_type, version,
		event_id, type, schema_version, data, metadata, occurred_at, recorded_at
		FROM events ORDER BY stream_id, version`)
	if err != nil {
		return nil, fmt.Errorf("check: read the event store: %w", err)
	}
	s := &store{streams: map[uuid.UUID][]eventstore.Event{}, decoded: map[uuid.UUID]domain.Event{},
		subs: map[uuid.UUID]domain.Subscription{}, invoices: map[uuid.UUID]domain.Invoice{}, upgrades: map[uuid.UUID]domain.Upgrade{},
		customers: map[uuid.UUID]domain.Customer{}}
	var unreadableMeta []string
	s.events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (eventstore.Event, error) {
		var e eventstore.Event
		var tx int64
		var meta []byte
		err := r.Scan(&e.Position.GlobalPosition, &tx, &e.StreamID, &e.StreamType, &e.Version, &e.ID, &e.Type,
			&e.SchemaVersion, &e.Data, &meta, &e.OccurredAt, &e.RecordedAt)
		e.Position.TransactionID = uint64(tx)
		e.OccurredAt, e.RecordedAt = e.OccurredAt.UTC(), e.RecordedAt.UTC()
		if err == nil {
			if jerr := json.Unmarshal(meta, &e.Metadata); jerr != nil {
				unreadableMeta = append(unreadableMeta, fmt.Sprintf("event %s (%s v%d): metadata: %v", e.ID, e.StreamID, e.Version, jerr))
			}
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("check: read the event store: %w", err)
	}
	s.bad = append(s.bad, unreadableMeta...)
	for _, e := range s.events {
		if _, ok := s.streams[e.StreamID]; !ok {
			s.order = append(s.order, e.StreamID)
		}
		s.streams[e.StreamID] = append(s.streams[e.StreamID], e)
		de, err := eventstore.DecodeEvent(e)
		if err != nil {
			s.bad = append(s.bad, err.Error())
			continue
		}
		s.decoded[e.ID] = de
		switch e.StreamType {
		case eventstore.SubscriptionStream:
			s.subs[e.StreamID] = domain.Evolve(s.subs[e.StreamID], de)
		case eventstore.InvoiceStream:
			s.invoices[e.StreamID] = domain.EvolveInvoice(s.invoices[e.StreamID], de)
		case eventstore.UpgradeStream:
			s.upgrades[e.StreamID] = domain.EvolveUpgrade(s.upgrades[e.StreamID], de)
		case eventstore.CustomerStream:
			s.customers[e.StreamID] = domain.EvolveCustomer(s.customers[e.StreamID], de)
		}
	}
	sort.Slice(s.order, func(i, j int) bool { return s.order[i].String() < s.order[j].String() })
	return s, nil
}

// subscriptionAt folds a subscription's stream up to and including version.
func (s *store) subscriptionAt(id uuid.UUID, version int64) domain.Subscription {
	var sub domain.Subscription
	for _, e := range s.streams[id] {
		if e.Version > version {
			break
		}
		if de, ok := s.decoded[e.ID]; ok {
			sub = domain.Evolve(sub, de)
		}
	}
	return sub
}

// sortedIDs returns the keys of m in the store's stream order.
func sortedIDs[V any](s *store, m map[uuid.UUID]V) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(m))
	for _, id := range s.order {
		if _, ok := m[id]; ok {
			out = append(out, id)
		}
	}
	return out
}
