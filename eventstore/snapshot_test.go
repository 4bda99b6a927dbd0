package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"pgregory.net/rapid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
)

// wantStateShape pins the shape of domain.Subscription that SubscriptionStateSchemaVersion
// describes. If this test fails, the state type changed: bump
// eventstore.SubscriptionStateSchemaVersion (old snapshots will then be ignored instead of
// misread) and paste the new shape here.
const wantStateShape = "Subscription{ID `` string(string);CustomerID `` string(string);Plan `` PlanTerms{PlanID `plan_id` string(string);Name `name` string(string);Interval `interval` Interval(string);UnitAmount `unit_amount` int64(int64);Currency `currency` string(string);Features `features` []string(string)};Seats `` int64(int64);Status `` Status(string);BillingAnchor `` time.Time;PeriodStart `` time.Time;PeriodEnd `` time.Time;TrialEnd `` time.Time;CancelAtPeriodEnd `` bool(bool);PaymentMethod `` string(string);TrialWillEndSent `` bool(bool);CanceledAt `` time.Time;PausedAt `` time.Time;ScheduledChange `` *ScheduledChange{Plan `plan` PlanTerms;Seats `seats` int64(int64);EffectiveAt `effective_at` time.Time};CreatedAt `` time.Time;UpdatedAt `` time.Time;Version `` int64(int64)}"

func TestSubscriptionStateShape(t *testing.T) {
	if got := eventstore.SubscriptionStateShape(); got != wantStateShape {
		t.Fatalf("domain.Subscription changed shape: bump eventstore.SubscriptionStateSchemaVersion (now %d) and update wantStateShape to\n%s",
			eventstore.SubscriptionStateSchemaVersion, got)
	}
}

// runCommand does what httpapi does for a command: in one transaction, load with the snapshot,
// decide, append, and save a snapshot when due. It commits unless rollback is set.
func runCommand(ctx context.Context, db *pgxpool.Pool, id uuid.UUID, c domain.Command, now time.Time, every int, rollback bool) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	sub, load, err := eventstore.LoadSubscriptionWithSnapshot(ctx, tx, id)
	if err != nil {
		return err
	}
	events, err := domain.Decide(sub, c, now)
	if err != nil {
		return nil // refused by the domain: nothing to append
	}
	encoded, err := eventstore.EncodeEvents(events, eventstore.Metadata{Actor: "test"})
	if err != nil {
		return err
	}
	if _, err := eventstore.Append(ctx, tx, eventstore.Stream{ID: id, Type: eventstore.SubscriptionStream}, sub.Version, encoded); err != nil {
		return err
	}
	for _, e := range events {
		sub = domain.Evolve(sub, e)
	}
	if load.ShouldSnapshot(every, len(events)) {
		if _, err := eventstore.SaveSubscriptionSnapshot(ctx, tx, id, sub); err != nil {
			return err
		}
	}
	if rollback {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

func drawCommand(t *rapid.T, sub domain.Subscription, plans []domain.Plan) domain.Command {
	if !sub.Exists() {
		trial := rapid.IntRange(0, 30).Draw(t, "trial_days")
		return domain.Create{SubscriptionID: sub.ID, CustomerID: "cus_1",
			Plan: rapid.SampledFrom(plans).Draw(t, "plan"), Seats: rapid.Int64Range(1, 20).Draw(t, "seats"), TrialDays: &trial}
	}
	switch rapid.IntRange(0, 7).Draw(t, "command") {
	case 0, 1:
		return domain.ChangeSeats{Seats: rapid.Int64Range(1, 20).Draw(t, "seats")}
	case 2:
		return domain.ChangePlan{Plan: rapid.SampledFrom(plans).Draw(t, "plan"), Seats: rapid.Int64Range(0, 5).Draw(t, "seats"),
			Timing: rapid.SampledFrom([]domain.Timing{domain.TimingDefault, domain.TimingImmediate, domain.TimingPeriodEnd}).Draw(t, "timing")}
	case 3:
		return domain.Pause{}
	case 4:
		return domain.Resume{}
	case 5:
		return domain.Cancel{AtPeriodEnd: rapid.Bool().Draw(t, "at_period_end")}
	case 6:
		return domain.UndoCancel{}
	default:
		return domain.ChangeSeats{Seats: 1}
	}
}

// plantSnapshot overwrites a stream's snapshot row as-is, bypassing every check of
// SaveSubscriptionSnapshot.
func plantSnapshot(ctx context.Context, db *pgxpool.Pool, id uuid.UUID, version int64, lastEventID uuid.UUID, schemaVersion int, state []byte) error {
	_, err := db.Exec(ctx, `INSERT INTO snapshots (stream_id, stream_type, version, last_event_id, state_schema_version, state)
		VALUES ($1, 'subscription', $2, $3, $4, $5)
		ON CONFLICT (stream_id) DO UPDATE SET version = $2, last_event_id = $3, state_schema_version = $4, state = $5`,
		id, version, lastEventID, schemaVersion, state)
	return err
}

func eventIDAt(ctx context.Context, db *pgxpool.Pool, id uuid.UUID, version int64) uuid.UUID {
	var eid uuid.UUID
	if err := db.QueryRow(ctx, `SELECT event_id FROM events WHERE stream_id = $1 AND version = $2`, id, version).Scan(&eid); err != nil {
		return uuid.New() // no such event: any id
	}
	return eid
}

// TestSnapshotLoadEqualsFullReplay: whatever the history, the snapshot frequency, the snapshots
// deleted, rolled back or planted (garbage under an old state schema version, unknown fields,
// a last event that is not stored), loading with snapshots gives exactly the full replay, alone
// or among others (LoadSubscriptions).
func TestSnapshotLoadEqualsFullReplay(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	plans := domain.DefaultCatalog().Plans()

	used, ignored := 0, 0
	rapid.Check(t, func(rt *rapid.T) {
		id := uuid.New()
		every := rapid.IntRange(1, 8).Draw(rt, "every")
		now := t0
		check := func(step int) {
			got, load, err := eventstore.LoadSubscriptionWithSnapshot(ctx, db, id)
			if err != nil {
				rt.Fatalf("step %d: load with snapshot: %v", step, err)
			}
			want, _, err := eventstore.LoadSubscription(ctx, db, id, eventstore.LoadOptions{})
			if err != nil {
				rt.Fatalf("step %d: full replay: %v", step, err)
			}
			if !reflect.DeepEqual(got, want) {
				rt.Fatalf("step %d: load with snapshot (%+v)\n got %#v\nwant %#v", step, load, got, want)
			}
			none := uuid.New()
			many, err := eventstore.LoadSubscriptions(ctx, db, []uuid.UUID{none, id, id})
			if err != nil {
				rt.Fatalf("step %d: load several: %v", step, err)
			}
			if !reflect.DeepEqual(many[id], want) || many[none].Exists() || len(many) != 2 {
				rt.Fatalf("step %d: load several gives %d states\n got %#v\nwant %#v", step, len(many), many[id], want)
			}
			if load.Ignored != nil && !errors.Is(load.Ignored, eventstore.ErrSnapshotIgnored) {
				rt.Fatalf("step %d: Ignored = %v, want ErrSnapshotIgnored", step, load.Ignored)
			}
			if load.SnapshotVersion > 0 {
				used++
			}
			if load.Ignored != nil {
				ignored++
			}
		}

		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for step := range steps {
			now = now.Add(time.Duration(rapid.Int64Range(0, 40*24*3600).Draw(rt, "advance_seconds")) * time.Second)
			current, _, err := eventstore.LoadSubscription(ctx, db, id, eventstore.LoadOptions{})
			if err != nil {
				rt.Fatal(err)
			}
			at := max(current.Version, 1)
			switch rapid.IntRange(0, 19).Draw(rt, "action") {
			case 0: // a purge
				if _, err := eventstore.DeleteSnapshots(ctx, db, id); err != nil {
					rt.Fatal(err)
				}
			case 1: // garbage from an older state shape
				garbage, _ := json.Marshal(map[string]any{
					"ID": rapid.Int().Draw(rt, "garbage_id"), "Seats": strings.ReplaceAll(rapid.String().Draw(rt, "garbage_seats"), "\x00", ""), "Version": at})
				if err := plantSnapshot(ctx, db, id, at, eventIDAt(ctx, db, id, at), eventstore.SubscriptionStateSchemaVersion-1, garbage); err != nil {
					rt.Fatal(err)
				}
			case 2: // a plausible state from an older shape that would be wrong if read
				wrong := current
				wrong.Seats, wrong.Status, wrong.Version = current.Seats+7, domain.StatusCanceled, at
				state, _ := json.Marshal(wrong)
				if err := plantSnapshot(ctx, db, id, at, eventIDAt(ctx, db, id, at), eventstore.SubscriptionStateSchemaVersion-1, state); err != nil {
					rt.Fatal(err)
				}
			case 3: // the current shape with a field this build does not know
				var fields map[string]any
				state, _ := json.Marshal(current)
				_ = json.Unmarshal(state, &fields)
				fields["Version"], fields["Seats"], fields["Discount"] = at, current.Seats+1, 10
				state, _ = json.Marshal(fields)
				if err := plantSnapshot(ctx, db, id, at, eventIDAt(ctx, db, id, at), eventstore.SubscriptionStateSchemaVersion, state); err != nil {
					rt.Fatal(err)
				}
			case 4: // the current shape, but its last event is not in the store
				wrong := current
				wrong.Seats, wrong.Version = current.Seats+3, at
				state, _ := json.Marshal(wrong)
				if err := plantSnapshot(ctx, db, id, at, uuid.New(), eventstore.SubscriptionStateSchemaVersion, state); err != nil {
					rt.Fatal(err)
				}
			default:
				if !current.Exists() {
					current.ID = id.String()
				}
				c := drawCommand(rt, current, plans)
				rollback := rapid.IntRange(0, 9).Draw(rt, "rollback") == 0
				if err := runCommand(ctx, db, id, c, now, every, rollback); err != nil {
					rt.Fatalf("step %d: %T: %v", step, c, err)
				}
			}
			check(step)
		}
	})
	if used == 0 || ignored == 0 {
		t.Errorf("loads from a snapshot: %d, with a snapshot ignored: %d; the generator should produce both", used, ignored)
	}
	t.Logf("loads from a snapshot: %d, with a snapshot ignored: %d", used, ignored)
}

// TestSnapshotSkipsFolding: with a snapshot, a load folds only the events after it, and a
// snapshot is never written for an append that rolls back.
func TestSnapshotSkipsFolding(t *testing.T) {
	t.Parallel()
	ctx, db := context.Background(), testenv.Postgres(t)
	plans := domain.DefaultCatalog().Plans()
	id := uuid.New()
	trial := 0
	now := t0
	if err := runCommand(ctx, db, id, domain.Create{SubscriptionID: id.String(), CustomerID: "cus_1", Plan: plans[0], Seats: 1, TrialDays: &trial}, now, 5, false); err != nil {
		t.Fatal(err)
	}
	for i := range 11 {
		now = now.Add(time.Second)
		if err := runCommand(ctx, db, id, domain.ChangeSeats{Seats: int64(2 + i%2)}, now, 5, false); err != nil {
			t.Fatal(err)
		}
	}
	// 12 events, snapshots due when 5 events would be folded: at versions 5 and 10.
	sub, load, err := eventstore.LoadSubscriptionWithSnapshot(ctx, db, id)
	if err != nil {
		t.Fatal(err)
	}
	if load.SnapshotVersion != 10 || load.EventsFolded != 2 || load.Ignored != nil || sub.Version != 12 {
		t.Fatalf("load = %+v, version %d; want snapshot 10, 2 events folded, version 12", load, sub.Version)
	}

	// Rolled back at the version where a snapshot is due: the snapshot stays at 10.
	for range 3 {
		now = now.Add(time.Second)
		if err := runCommand(ctx, db, id, domain.ChangeSeats{Seats: 9}, now, 1, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, load, _ = eventstore.LoadSubscriptionWithSnapshot(ctx, db, id); load.SnapshotVersion != 10 {
		t.Fatalf("after rolled-back commands: snapshot at %d, want 10", load.SnapshotVersion)
	}

	// An outdated shape is reported, not used, and replaced by the next command's snapshot.
	if _, err := db.Exec(ctx, `UPDATE snapshots SET state_schema_version = 0`); err != nil {
		t.Fatal(err)
	}
	if _, load, _ = eventstore.LoadSubscriptionWithSnapshot(ctx, db, id); load.SnapshotVersion != 0 || !errors.Is(load.Ignored, eventstore.ErrSnapshotIgnored) {
		t.Fatalf("outdated snapshot: load = %+v, want it ignored", load)
	}
	if err := runCommand(ctx, db, id, domain.ChangeSeats{Seats: 4}, now.Add(time.Second), 5, false); err != nil {
		t.Fatal(err)
	}
	if _, load, _ = eventstore.LoadSubscriptionWithSnapshot(ctx, db, id); load.SnapshotVersion != 13 || load.Ignored != nil {
		t.Fatalf("after the next command: load = %+v, want a fresh snapshot at 13", load)
	}
}
