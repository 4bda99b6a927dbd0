package billing

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// Kinds of billing_schedule rows.
const (
	kindRenewal       = "renewal"
	kindTrialReminder = "trial_reminder"
	kindCollect       = "collect"
	kindUpgrade       = "upgrade"
)

// scheduleKey names a row of billing_schedule.
type scheduleKey struct {
	stream uuid.UUID
	kind   string
}

// scheduleRow is what a row of billing_schedule must be: due at due, or absent when due is nil.
type scheduleRow struct {
	key scheduleKey
	due *time.Time
}

// setScheduleSQL makes the rows of the given streams and kinds match dues: a row per non-null
// due (moved there, and released if claimed), none for a null one. One statement, so a command
// (or a batch of them) pays one round trip for it.
const setScheduleSQL = `
WITH want AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS w(stream_id, kind, due)),
gone AS (
    DELETE FROM billing_schedule s USING want
    WHERE s.stream_id = want.stream_id AND s.kind = want.kind AND want.due IS NULL)
INSERT INTO billing_schedule (kind, stream_id, due_at)
SELECT kind, stream_id, due FROM want WHERE due IS NOT NULL
ON CONFLICT (kind, stream_id) DO UPDATE SET due_at = excluded.due_at, claimed_until = NULL`

// setSchedule writes rows, each (stream, kind) at most once.
func setSchedule(ctx context.Context, q eventstore.Querier, rows []scheduleRow) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := q.Exec(ctx, setScheduleSQL, scheduleArgs(rows)...); err != nil {
		return fmt.Errorf("schedule %s: %w", rows[0].key.stream, err)
	}
	return nil
}

// queueSetSchedule is setSchedule queued on b.
func queueSetSchedule(b *pgx.Batch, rows []scheduleRow) {
	if len(rows) == 0 {
		return
	}
	b.Queue(setScheduleSQL, scheduleArgs(rows)...)
}

// scheduleArgs are setScheduleSQL's arguments for rows.
func scheduleArgs(rows []scheduleRow) []any {
	ids, kinds, dues := make([]uuid.UUID, len(rows)), make([]string, len(rows)), make([]*time.Time, len(rows))
	for i, r := range rows {
		ids[i], kinds[i], dues[i] = r.key.stream, r.key.kind, r.due
	}
	return []any{ids, kinds, dues}
}

func due(t time.Time, ok bool) *time.Time {
	if !ok {
		return nil
	}
	return &t
}

// subscriptionDues are the subscription's renewal and trial reminder, derived from its state.
func subscriptionDues(id uuid.UUID, s domain.Subscription) []scheduleRow {
	return []scheduleRow{
		{scheduleKey{id, kindRenewal}, due(s.RenewalDue())},
		{scheduleKey{id, kindTrialReminder}, due(s.TrialReminderDue())},
	}
}

// invoiceDue is the invoice's next payment attempt, if it is collectible.
func invoiceDue(id uuid.UUID, inv domain.Invoice) scheduleRow {
	return scheduleRow{scheduleKey{id, kindCollect}, due(inv.NextAttemptAt, inv.Collectible())}
}

// ScheduleSubscription derives the subscription's renewal and trial reminder from its state. Every
// writer of a subscription calls it in the transaction of its events.
func ScheduleSubscription(ctx context.Context, q eventstore.Querier, id uuid.UUID, s domain.Subscription) error {
	return setSchedule(ctx, q, subscriptionDues(id, s))
}

func scheduleInvoice(ctx context.Context, q eventstore.Querier, id uuid.UUID, inv domain.Invoice) error {
	return setSchedule(ctx, q, []scheduleRow{invoiceDue(id, inv)})
}

// scheduleUpgrade keeps a row for an unfinished saga, so that a process that dies while driving it
// leaves it to be resumed by whichever process claims the row next. claimedFor, when positive,
// leases the row to the caller, who drives the saga now.
func scheduleUpgrade(ctx context.Context, q eventstore.Querier, id uuid.UUID, u domain.Upgrade, claimedFor time.Duration) error {
	if err := setSchedule(ctx, q, []scheduleRow{{scheduleKey{id, kindUpgrade}, due(u.UpdatedAt, !u.Done())}}); err != nil {
		return err
	}
	if claimedFor > 0 && !u.Done() {
		_, err := q.Exec(ctx, `UPDATE billing_schedule SET claimed_until = now() + $2::interval
			WHERE kind = 'upgrade' AND stream_id = $1`, id, claimedFor)
		return err
	}
	return nil
}

// job is a claimed billing_schedule row.
type job struct {
	kind  string
	id    uuid.UUID
	dueAt time.Time
}

// claimSQL leases the earliest due rows (up to $3) no other process holds. The lease is on the
// database's clock (real time) while due_at is on the service clock, so a frozen test clock
// never stops a dead process's lease from running out. The rows are updated by their tuple ids,
// which the planner always reads directly: joined back on the key, they were found by a hash
// join over the whole table whenever its statistics were stale.
const claimSQL = `
UPDATE billing_schedule SET claimed_until = now() + $2::interval
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM billing_schedule
    WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY due_at, kind, stream_id LIMIT $3 FOR UPDATE SKIP LOCKED))
RETURNING kind, stream_id, due_at`

// claim leases up to n due jobs, earliest first.
func (s *Service) claim(ctx context.Context, now time.Time, lease time.Duration, n int) ([]job, error) {
	rows, err := s.db.Query(ctx, claimSQL, now, lease, n)
	if err != nil {
		return nil, fmt.Errorf("claim billing work: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (job, error) {
		var j job
		err := row.Scan(&j.kind, &j.id, &j.dueAt)
		j.dueAt = j.dueAt.UTC()
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim billing work: %w", err)
	}
	// RETURNING does not keep the subquery's order.
	slices.SortFunc(jobs, func(a, b job) int {
		return cmp.Or(a.dueAt.Compare(b.dueAt), cmp.Compare(a.kind, b.kind), bytes.Compare(a.id[:], b.id[:]))
	})
	return jobs, nil
}

// dueBefore reports whether a row no process holds is due before t.
func (s *Service) dueBefore(ctx context.Context, t time.Time) (bool, error) {
	var due bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM billing_schedule
		WHERE due_at < $1 AND (claimed_until IS NULL OR claimed_until < now()))`, t).Scan(&due)
	if err != nil {
		return false, fmt.Errorf("look for earlier billing work: %w", err)
	}
	return due, nil
}

// release gives up the leases of jobs this process claimed and will not work on now.
func (s *Service) release(ctx context.Context, jobs []job) error {
	kinds, ids := make([]string, len(jobs)), make([]uuid.UUID, len(jobs))
	for i, j := range jobs {
		kinds[i], ids[i] = j.kind, j.id
	}
	_, err := s.db.Exec(ctx, `UPDATE billing_schedule s SET claimed_until = NULL
		FROM unnest($1::text[], $2::uuid[]) AS r(kind, stream_id)
		WHERE s.kind = r.kind AND s.stream_id = r.stream_id`, kinds, ids)
	if err != nil {
		return fmt.Errorf("release billing work: %w", err)
	}
	return nil
}
