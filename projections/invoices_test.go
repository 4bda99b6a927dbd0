package projections_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
	"github.com/billing-oss/billing/projections/projectionstest"
)

// billingHistory runs random subscription commands and then random billing steps (invoices
// issued, paid, declined, refunded, voided, written off) over those subscriptions.
func billingHistory(t *testing.T, s *store, seed uint64, commands, steps int) []uuid.UUID {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	subs := s.randomWorkload(rng, commands, nil)
	w := &testenv.BillingWorkload{DB: s.db, Rng: rng, Now: s.now}
	for range steps {
		w.Step(t, subs)
	}
	s.now = w.Now
	return subs
}

// invoiceFigures is one invoice_movements row's figures, as this test computes them.
type invoiceFigures struct {
	InvoiceID      uuid.UUID
	Version        int64
	Type           string
	SubscriptionID uuid.UUID
	CustomerID     string
	Currency       string
	OccurredAt     time.Time
	Invoiced       int64
	Collected      int64
	Refunded       int64
	CreditGranted  int64
	CreditApplied  int64
	Voided         int64
	Uncollectible  int64
	Outstanding    int64
}

// foldInvoices folds every invoice stream of the log with domain.EvolveInvoice and derives the
// revenue movements from the events themselves, by this test's own reading of what each event
// means for the money: the model the projector's tables must equal.
func foldInvoices(t testing.TB, events []eventstore.Event) (map[uuid.UUID]domain.Invoice, map[uuid.UUID]invoiceFigures) {
	t.Helper()
	streams := map[uuid.UUID][]eventstore.Event{}
	for _, e := range events {
		if e.StreamType == eventstore.InvoiceStream {
			streams[e.StreamID] = append(streams[e.StreamID], e)
		}
	}
	invoices, movements := map[uuid.UUID]domain.Invoice{}, map[uuid.UUID]invoiceFigures{}
	for id, stream := range streams {
		slices.SortFunc(stream, func(a, b eventstore.Event) int { return int(a.Version - b.Version) })
		var inv domain.Invoice
		for _, e := range stream {
			de, err := eventstore.DecodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			prev := inv
			inv = domain.EvolveInvoice(inv, de)
			var f invoiceFigures
			wasOpen := prev.Status == domain.InvoiceOpen
			switch de := de.(type) {
			case domain.InvoiceCreated:
				f.Invoiced = de.Total
				if de.CreditApplied > 0 {
					f.CreditApplied = de.CreditApplied
				} else {
					f.CreditGranted = -de.CreditApplied // a credit invoice's credit goes to the balance
				}
				if de.Total > 0 {
					f.Outstanding = de.Total // issued unpaid; a zero total is paid at once
				}
			case domain.InvoicePaymentSucceeded:
				f.Collected = de.Amount
				if wasOpen {
					f.Outstanding = -prev.Total
				}
			case domain.InvoiceRefunded:
				f.Refunded = de.Amount
			case domain.InvoiceVoided:
				f.Voided = prev.Total
				if prev.CreditApplied > 0 {
					f.CreditGranted = prev.CreditApplied
				}
				if wasOpen {
					f.Outstanding = -prev.Total
				}
			case domain.InvoiceMarkedUncollectible:
				f.Uncollectible = prev.Total
				if wasOpen {
					f.Outstanding = -prev.Total
				}
			}
			zero := invoiceFigures{}
			if f != zero {
				f.InvoiceID, f.Version, f.Type, f.OccurredAt = id, e.Version, e.Type, e.OccurredAt
				f.SubscriptionID, f.CustomerID, f.Currency = uuid.MustParse(inv.SubscriptionID), inv.CustomerID, inv.Currency
				movements[e.ID] = f
			}
		}
		invoices[id] = inv
	}
	return invoices, movements
}

func invoiceViewStates(t testing.TB, db *pgxpool.Pool) map[uuid.UUID]domain.Invoice {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT id, state FROM invoice_view`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]domain.Invoice{}
	var id uuid.UUID
	var state []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &state}, func() error {
		inv, err := projections.DecodeInvoiceState(state)
		out[id] = inv
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func invoiceMovementRows(t testing.TB, db *pgxpool.Pool) map[uuid.UUID]invoiceFigures {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT event_id, invoice_id, version, type, subscription_id, customer_id,
		currency, occurred_at, invoiced, collected, refunded, credit_granted, credit_applied, voided, uncollectible,
		outstanding FROM invoice_movements`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]invoiceFigures{}
	var id uuid.UUID
	var f invoiceFigures
	if _, err := pgx.ForEachRow(rows, []any{&id, &f.InvoiceID, &f.Version, &f.Type, &f.SubscriptionID, &f.CustomerID,
		&f.Currency, &f.OccurredAt, &f.Invoiced, &f.Collected, &f.Refunded, &f.CreditGranted, &f.CreditApplied, &f.Voided,
		&f.Uncollectible, &f.Outstanding}, func() error {
		f.OccurredAt = f.OccurredAt.UTC()
		out[id] = f
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkInvoiceReadModel compares both tables with an independent fold of the log, every row's
// state with eventstore.LoadInvoice, its columns with its state, and the credit the movements
// add up to with each customer's balance in the customer streams.
func checkInvoiceReadModel(t testing.TB, db *pgxpool.Pool) map[uuid.UUID]domain.Invoice {
	t.Helper()
	ctx := context.Background()
	wantInv, wantMov := foldInvoices(t, testenv.WholeLog(t, db))
	got := invoiceViewStates(t, db)
	if len(got) != len(wantInv) {
		t.Errorf("invoice_view has %d rows, the log %d invoices", len(got), len(wantInv))
	}
	for id, w := range wantInv {
		loaded, err := eventstore.LoadInvoice(ctx, db, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(loaded, w) {
			t.Fatalf("the test's fold of %s differs from LoadInvoice:\n%+v\n%+v", id, w, loaded)
		}
		if g, ok := got[id]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("invoice %s:\nview %+v\nfold %+v", id, g, w)
			continue
		}
		checkInvoiceColumns(t, db, id, w)
	}
	gotMov := invoiceMovementRows(t, db)
	if len(gotMov) != len(wantMov) {
		t.Errorf("invoice_movements has %d rows, the fold %d", len(gotMov), len(wantMov))
	}
	type balanceKey struct{ customer, currency string }
	credit := map[balanceKey]int64{}
	for id, w := range wantMov {
		if g, ok := gotMov[id]; !ok || g != w {
			t.Errorf("movement of event %s:\n got %+v\nwant %+v", id, g, w)
		}
		credit[balanceKey{w.CustomerID, w.Currency}] += w.CreditGranted - w.CreditApplied
	}
	for k, want := range credit {
		c, err := eventstore.LoadCustomer(ctx, db, k.customer)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Credit[k.currency]; got != want {
			t.Errorf("customer %s: credit granted − applied in the movements is %d %s, the customer's balance %d",
				k.customer, want, k.currency, got)
		}
	}
	return wantInv
}

// checkInvoiceColumns compares a row's columns with the state they are derived from.
func checkInvoiceColumns(t testing.TB, db *pgxpool.Pool, id uuid.UUID, inv domain.Invoice) {
	t.Helper()
	var row struct {
		number, customer, currency, status, reason        string
		sub                                               uuid.UUID
		upgrade                                           *uuid.UUID
		subtotal, applied, total, paid, refunded, version int64
		attempts                                          int
		periodStart, periodEnd, created, updated          time.Time
		nextAttempt, paidAt, voidedAt                     *time.Time
		lines                                             []domain.InvoiceLine
	}
	err := db.QueryRow(context.Background(), `SELECT number, customer_id, currency, status, reason, subscription_id,
		upgrade_id, subtotal, credit_applied, total, amount_paid, amount_refunded, version, attempts, period_start,
		period_end, created_at, updated_at, next_attempt_at, paid_at, voided_at, lines FROM invoice_view WHERE id = $1`, id).
		Scan(&row.number, &row.customer, &row.currency, &row.status, &row.reason, &row.sub, &row.upgrade, &row.subtotal,
			&row.applied, &row.total, &row.paid, &row.refunded, &row.version, &row.attempts, &row.periodStart,
			&row.periodEnd, &row.created, &row.updated, &row.nextAttempt, &row.paidAt, &row.voidedAt, &row.lines)
	if err != nil {
		t.Fatal(err)
	}
	optEq := func(p *time.Time, v time.Time) bool { return (p == nil && v.IsZero()) || (p != nil && p.Equal(v)) }
	upgradeOK := (row.upgrade == nil && inv.UpgradeID == "") || (row.upgrade != nil && row.upgrade.String() == inv.UpgradeID)
	linesOK := len(row.lines) == len(inv.Lines)
	for i := range min(len(row.lines), len(inv.Lines)) {
		g, w := row.lines[i], inv.Lines[i]
		linesOK = linesOK && g.Description == w.Description && g.Amount == w.Amount && g.Quantity == w.Quantity &&
			g.UnitAmount == w.UnitAmount && g.PeriodStart.Equal(w.PeriodStart) && g.PeriodEnd.Equal(w.PeriodEnd) &&
			g.Proration == w.Proration && g.PlanID == w.PlanID
	}
	ok := row.number == inv.Number && row.customer == inv.CustomerID && row.currency == inv.Currency &&
		row.status == string(inv.Status) && row.reason == string(inv.Reason) && row.sub.String() == inv.SubscriptionID &&
		upgradeOK && row.subtotal == inv.Subtotal && row.applied == inv.CreditApplied && row.total == inv.Total &&
		row.paid == inv.AmountPaid && row.refunded == inv.AmountRefunded && row.version == inv.Version &&
		row.attempts == inv.Attempts && row.periodStart.Equal(inv.PeriodStart) && row.periodEnd.Equal(inv.PeriodEnd) &&
		row.created.Equal(inv.CreatedAt) && row.updated.Equal(inv.UpdatedAt) && optEq(row.nextAttempt, inv.NextAttemptAt) &&
		optEq(row.paidAt, inv.PaidAt) && optEq(row.voidedAt, inv.VoidedAt) && linesOK
	if !ok {
		t.Errorf("columns of invoice %s = %+v, state %+v", id, row, inv)
	}
}

// invoiceSnapshot renders both invoice tables, to compare them before and after something that
// must not change them.
func invoiceSnapshot(t testing.TB, db *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := db.QueryRow(context.Background(), `SELECT
		coalesce((SELECT jsonb_agg(to_jsonb(v) ORDER BY id)::text FROM invoice_view v), '') ||
		coalesce((SELECT jsonb_agg(to_jsonb(m) ORDER BY event_id)::text FROM invoice_movements m), '')`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// redeliverChangesNothing delivers every event again, through Apply (the progress table says
// they are done) and straight to the projector (its own version check must say so too).
func redeliverChangesNothing(t *testing.T, db *pgxpool.Pool, p projections.Projector, events []eventstore.Event, snap func(testing.TB, *pgxpool.Pool) string) {
	t.Helper()
	ctx := context.Background()
	before := snap(t, db)
	for _, e := range events {
		applied, err := projections.Apply(ctx, db, p, e, -1)
		if err != nil || applied {
			t.Fatalf("redelivered %s v%d: applied %t, %v; want a no-op", e.Type, e.Version, applied, err)
		}
	}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for _, e := range events {
			if err := p.Apply(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := snap(t, db); after != before {
		t.Errorf("redelivery changed the read model:\nbefore %s\nafter  %s", before, after)
	}
}

// rebuildRestores damages the read model with damage (in ways the live projector never reads
// back), rebuilds it, and checks the tables, their indexes and the progress are as before, with
// nothing of the rebuild left behind.
func rebuildRestores(t *testing.T, db *pgxpool.Pool, p projections.Projector, snap func(testing.TB, *pgxpool.Pool) string, damage ...string) {
	t.Helper()
	ctx := context.Background()
	before := snap(t, db)
	tables := p.(projections.Rebuildable).Tables()
	indexes := func() []string {
		rows, err := db.Query(ctx, `SELECT tablename || ': ' || indexname FROM pg_indexes WHERE tablename = ANY($1) ORDER BY 1`, tables)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	indexesBefore := indexes()
	for _, sql := range damage {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if snap(t, db) == before {
		t.Fatalf("the damage changed nothing; the rebuild would prove nothing")
	}
	stats, err := projections.Rebuild(ctx, db, p, projections.RebuildOptions{BatchSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Events == 0 {
		t.Errorf("rebuild stats = %+v", stats)
	}
	if after := snap(t, db); after != before {
		t.Errorf("after the rebuild the read model differs:\nbefore %s\nafter  %s", before, after)
	}
	if got := indexes(); !slices.Equal(got, indexesBefore) {
		t.Errorf("indexes after the swap:\n%v\nbefore:\n%v", got, indexesBefore)
	}
	var progress int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM projection_versions WHERE projector = $1`, p.Name()).Scan(&progress); err != nil {
		t.Fatal(err)
	}
	rows, _ := db.Query(ctx, `SELECT DISTINCT stream_id, stream_type FROM events`)
	streams := 0
	var id uuid.UUID
	var streamType string
	if _, err := pgx.ForEachRow(rows, []any{&id, &streamType}, func() error {
		if f, ok := p.(interface{ Reads(string) bool }); !ok || f.Reads(streamType) {
			streams++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if progress != streams {
		t.Errorf("after the rebuild %s has progress for %d streams, the store has %d it reads", p.Name(), progress, streams)
	}
	rows, _ = db.Query(ctx, `SELECT tablename FROM pg_tables WHERE tablename LIKE '%\_next' OR tablename LIKE '%\_old'`)
	if left, err := pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(left) > 0 {
		t.Errorf("tables left behind: %v, %v", left, err)
	}
}

// TestInvoicesMatchAggregate: after projecting a random billing history, every invoice_view row
// holds exactly the state eventstore.LoadInvoice folds and its columns say the same, the
// movements are those of an independent reading of the log and add up to the customers'
// credit balances; redelivering everything changes nothing, and a rebuild gives the same tables.
func TestInvoicesMatchAggregate(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	billingHistory(t, s, 11, 40, 300)
	p := projections.NewInvoices()
	events := testenv.WholeLog(t, s.db)
	projectionstest.ApplyAll(t, s.db, p, events)
	invoices := checkInvoiceReadModel(t, s.db)

	// The history must hold every case the projector distinguishes, or the test proves less
	// than it says.
	seen := map[string]int{}
	for _, inv := range invoices {
		seen["status "+string(inv.Status)]++
		switch {
		case inv.Subtotal < 0:
			seen["credit invoice"]++
		case inv.CreditApplied > 0:
			seen["credit applied"]++
		}
		if inv.AmountRefunded > 0 {
			seen["refunded"]++
		}
		if inv.UpgradeID != "" {
			seen["upgrade"]++
		}
		if inv.Attempts > 1 || (inv.Attempts == 1 && inv.Status != domain.InvoicePaid) {
			seen["declined"]++
		}
		if inv.Status == domain.InvoiceVoid && inv.CreditApplied > 0 {
			seen["credit returned"]++
		}
	}
	for _, want := range []string{"status open", "status paid", "status void", "status uncollectible", "credit invoice",
		"credit applied", "refunded", "upgrade", "declined", "credit returned"} {
		if seen[want] == 0 {
			t.Errorf("the history has no invoice with %s: %v", want, seen)
		}
	}

	redeliverChangesNothing(t, s.db, p, events, invoiceSnapshot)
	rebuildRestores(t, s.db, p, invoiceSnapshot,
		`DELETE FROM invoice_movements WHERE invoiced > 0`,
		`UPDATE invoice_view SET customer_id = 'damaged', total = 0`)
}

// TestInvoicesRefuseGapsAndSkipOtherStreams: an invoice event ahead of its predecessor is refused
// with ErrOutOfOrder and changes nothing (through Apply, and by the projector on its own);
// subscription and customer events are not the projector's.
func TestInvoicesRefuseGapsAndSkipOtherStreams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	p := projections.NewInvoices()
	subID := s.create("cus_gap", "pro_monthly", 2, 0)
	sub, _, err := eventstore.LoadSubscription(ctx, s.db, subID, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := testenv.IssueInvoice(t, s.db, domain.InvoiceRequest{SubscriptionID: subID.String(), CustomerID: sub.CustomerID,
		Currency: sub.Plan.Currency, Reason: domain.InvoiceForCreate, Lines: []domain.InvoiceLine{testenv.PeriodLine(sub)},
		PeriodStart: sub.PeriodStart, PeriodEnd: sub.PeriodEnd}, s.now)
	testenv.PayInvoice(t, s.db, id, false, s.now.Add(time.Minute))
	testenv.PayInvoice(t, s.db, id, true, s.now.Add(time.Hour))
	events, err := eventstore.Load(ctx, s.db, id, eventstore.LoadOptions{})
	if err != nil || len(events) != 3 {
		t.Fatalf("invoice events = %v, %v", events, err)
	}

	if _, err := projections.Apply(ctx, s.db, p, events[1], -1); !errors.Is(err, projections.ErrOutOfOrder) {
		t.Errorf("Apply of version 2 first: %v, want ErrOutOfOrder", err)
	}
	if _, err := projections.Apply(ctx, s.db, p, events[0], -1); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return p.Apply(ctx, tx, events[2]) })
	if !errors.Is(err, projections.ErrOutOfOrder) {
		t.Errorf("projector given version 3 on a row at version 1: %v, want ErrOutOfOrder", err)
	}
	if got := invoiceViewStates(t, s.db)[id]; got.Version != 1 || got.Status != domain.InvoiceOpen {
		t.Errorf("after refused events the row is %+v, want version 1, open", got)
	}
	projectionstest.ApplyAll(t, s.db, p, events[1:])
	if got := invoiceViewStates(t, s.db)[id]; got.Version != 3 || got.Status != domain.InvoicePaid || got.Attempts != 2 ||
		got.AmountPaid != 9800 {
		t.Errorf("after every event the row is %+v, want version 3, paid 9800 at the second attempt", got)
	}

	before := invoiceSnapshot(t, s.db)
	var others []eventstore.Event
	for _, e := range testenv.WholeLog(t, s.db) {
		if e.StreamType != eventstore.InvoiceStream {
			others = append(others, e)
		}
	}
	if len(others) != 2 { // the subscription's creation and the customer's numbering
		t.Fatalf("other events = %d, want 2", len(others))
	}
	projectionstest.ApplyAll(t, s.db, p, others)
	if after := invoiceSnapshot(t, s.db); after != before {
		t.Errorf("subscription and customer events changed the invoices read model")
	}
	var progress int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM projection_versions WHERE projector = $1 AND stream_id <> $2`,
		p.Name(), id).Scan(&progress); err != nil || progress != 0 {
		t.Errorf("the projector keeps progress of %d streams it does not read (%v)", progress, err)
	}
	checkInvoiceReadModel(t, s.db)
}

// TestConcurrentFoldsNeverGoBack: two consumers fold the same invoice at once while it has no
// row yet (a redelivery racing the first delivery, as after Redis lost data): one its first two
// events, the other only the first, waiting on the first one's insert. The row and the stream's
// progress end at the later version. They used to end at the earlier one, with the later event
// acknowledged: the fault suite's Redis scenario found an invoice_view row left open of a paid
// invoice.
func TestConcurrentFoldsNeverGoBack(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	billingHistory(t, s, 11, 10, 40)
	var first, second eventstore.Event
	byStream := map[uuid.UUID][]eventstore.Event{}
	for _, e := range testenv.WholeLog(t, s.db) {
		if e.StreamType == eventstore.InvoiceStream {
			byStream[e.StreamID] = append(byStream[e.StreamID], e)
		}
	}
	for _, stream := range byStream {
		if len(stream) >= 2 {
			first, second = stream[0], stream[1]
			break
		}
	}
	if second.Version != 2 {
		t.Fatal("the history has no invoice with two events")
	}
	ctx := context.Background()
	p := projections.NewInvoices()
	a, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	for _, e := range []eventstore.Event{first, second} {
		if _, err := projections.ApplyTx(ctx, a, p.Name(), p, e); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- pgx.BeginFunc(ctx, s.db, func(b pgx.Tx) error {
			_, err := projections.ApplyTx(ctx, b, p.Name(), p, first)
			return err
		})
	}()
	time.Sleep(300 * time.Millisecond) // b folds the first event alone and waits on a's row
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var view, progress int64
	if err := s.db.QueryRow(ctx, `SELECT v.version, pv.version FROM invoice_view v, projection_versions pv
		WHERE v.id = $1 AND pv.projector = $2 AND pv.stream_id = $1`, first.StreamID, p.Name()).Scan(&view, &progress); err != nil {
		t.Fatal(err)
	}
	if view != 2 || progress != 2 {
		t.Errorf("invoice_view at version %d, progress at %d; want both at 2", view, progress)
	}
}
