package httpapi

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/billing"
)

// Group commit: concurrent creates (POST /v1/subscriptions) share one transaction. A transaction
// per request is bounded by what one commit costs (its round trips, its WAL flush); a batch pays
// that once for all its commands, and writes their events, invoices, schedule rows and
// idempotency records with one multi-row statement each. It makes four round trips: BEGIN, its
// reads (keys and customers), its writes, COMMIT.
//
// The first create to arrive leads a batch: it waits until GroupCommit.MaxBatch creates have
// joined or GroupCommit.Delay has passed, and for a free slot (at most GroupCommit.Concurrency
// batches commit at once; while the leader waits for one, the batch keeps filling), then commits
// the batch and hands every request its own answer. Each command is decided as it would be alone:
// the same idempotency rules (a key twice in one batch is in flight the second time), the same
// invoice, and customers' states chained in memory, so two creates of one customer in a batch
// take invoice numbers n and n+1. If the batch fails for any reason (a conflict on a customer's
// stream, a database error), nothing of it is committed and every one of its commands runs again
// alone through attempt, so each gets exactly the answer it would have had. They run one after
// the other, in the leader: run at once, the creates of one customer in the batch would only
// conflict with each other on the customer's stream.

// GroupCommit tunes group commit. Zero fields take DefaultGroupCommit's; MaxBatch 1 turns group
// commit off.
type GroupCommit struct {
	MaxBatch    int           // commands in one transaction at most
	Delay       time.Duration // how long a batch's first command waits for others
	Concurrency int           // batches committing at once
}

// DefaultGroupCommit is what BENCHMARKS.md found best on its machine.
var DefaultGroupCommit = GroupCommit{MaxBatch: 64, Delay: time.Millisecond, Concurrency: 2}

func (g GroupCommit) withDefaults() GroupCommit {
	if g.MaxBatch <= 0 {
		g.MaxBatch = DefaultGroupCommit.MaxBatch
	}
	if g.Delay <= 0 {
		g.Delay = DefaultGroupCommit.Delay
	}
	if g.Concurrency <= 0 {
		g.Concurrency = DefaultGroupCommit.Concurrency
	}
	return g
}

// batchTimeout bounds a batch's transaction: it runs for many requests, so no single request's
// context (a client hanging up) may cancel it.
const batchTimeout = 30 * time.Second

// errBatchFailed tells a request that its batch stopped (a panic) before answering it: it must run
// alone.
var errBatchFailed = errors.New("group commit failed")

// createJob is one request's command waiting in a batch.
type createJob struct {
	r    *http.Request // for a run alone, with the request's own context, if the batch fails
	c    command
	idem *idempotency
	meta eventstore.Metadata
	done chan jobResult // buffered: the committer never waits for the request
}

// jobResult is what attempt returns.
type jobResult struct {
	resp     storedResponse
	replayed bool
	err      error
}

// batcher forms batches; see the comment at the top of this file.
type batcher struct {
	cfg   GroupCommit
	slots chan struct{}
	mu    sync.Mutex
	open  *batch // the batch new jobs join; nil when none is filling
}

type batch struct {
	jobs []*createJob
	full chan struct{} // closed when the batch reached MaxBatch (and left b.open)
}

func newBatcher(cfg GroupCommit) *batcher {
	cfg = cfg.withDefaults()
	return &batcher{cfg: cfg, slots: make(chan struct{}, cfg.Concurrency)}
}

// submit adds j to the filling batch, commits the batch with commit if j is its first job, and
// returns j's result.
func (b *batcher) submit(j *createJob, commit func([]*createJob)) jobResult {
	b.mu.Lock()
	bt := b.open
	leader := bt == nil
	if leader {
		bt = &batch{full: make(chan struct{})}
		b.open = bt
	}
	bt.jobs = append(bt.jobs, j)
	if len(bt.jobs) == b.cfg.MaxBatch {
		close(bt.full)
		b.open = nil
	}
	b.mu.Unlock()
	if leader {
		b.lead(bt, commit)
	}
	return <-j.done
}

func (b *batcher) lead(bt *batch, commit func([]*createJob)) {
	timer := time.NewTimer(b.cfg.Delay)
	select {
	case <-bt.full:
	case <-timer.C:
	}
	timer.Stop()
	b.slots <- struct{}{}
	defer func() { <-b.slots }()
	b.mu.Lock()
	if b.open == bt {
		b.open = nil
	}
	jobs := bt.jobs
	b.mu.Unlock()
	commit(jobs)
}

// attemptInGroup is attempt for a create, in a batch with other creates.
func (a *API) attemptInGroup(r *http.Request, c command, idem *idempotency) (storedResponse, bool, error) {
	j := &createJob{r: r, c: c, idem: idem, meta: commandMeta(r, idem), done: make(chan jobResult, 1)}
	res := a.group.submit(j, a.commitBatch)
	if errors.Is(res.err, errBatchFailed) {
		return a.attempt(r.Context(), r, c, idem)
	}
	return res.resp, res.replayed, res.err
}

// commitBatch runs a batch and answers each of its jobs; if the batch fails, each job runs alone.
func (a *API) commitBatch(jobs []*createJob) {
	next := 0 // jobs before it are answered
	defer func() {
		// A panic: the jobs not answered run alone in their own requests, and the panic goes on
		// to the leader's handler.
		for _, j := range jobs[next:] {
			j.done <- jobResult{err: errBatchFailed}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	results, outcomes, err := a.runBatch(ctx, jobs)
	a.metrics.batch(len(jobs), err == nil)
	if err != nil {
		a.log.WarnContext(ctx, "group commit failed; its commands run one by one", "commands", len(jobs), "error", err)
		for ; next < len(jobs); next++ {
			j := jobs[next]
			resp, replayed, err := a.attempt(j.r.Context(), j.r, j.c, j.idem)
			j.done <- jobResult{resp: resp, replayed: replayed, err: err}
		}
		return
	}
	a.committed()
	for ; next < len(jobs); next++ {
		a.countEvents(outcomes[next])
		jobs[next].done <- results[next]
	}
}

// runBatch is attempt for many creates in one transaction.
func (a *API) runBatch(ctx context.Context, jobs []*createJob) ([]jobResult, []outcome, error) {
	tx, err := a.db.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback(ctx)
	results, outcomes := make([]jobResult, len(jobs)), make([]outcome, len(jobs))

	// Idempotency first: a replay, a key in flight or reused is answered without deciding.
	var keys []*idempotency
	var keyed []int // job index of each key
	customers := make([]string, len(jobs))
	for i, j := range jobs {
		if j.idem != nil {
			keys, keyed = append(keys, j.idem), append(keyed, i)
		}
		customers[i] = j.c.customerID
	}
	// The keys' locks and records and every command's customer are read in one round trip. A
	// replay's customer is read for nothing, but knowing the replays first would cost one more.
	reads := &pgx.Batch{}
	claims := queueClaimKeys(reads, keys)
	writes := billing.NewWrites(tx)
	writes.QueueLoadCustomers(reads, customers)
	if err := tx.SendBatch(ctx, reads).Close(); err != nil {
		return nil, nil, err
	}
	answered := make([]bool, len(jobs))
	for k, cl := range claims {
		if i := keyed[k]; cl.err != nil || cl.stored != nil {
			results[i], answered[i] = jobResult{resp: deref(cl.stored), replayed: cl.stored != nil, err: cl.err}, true
		}
	}

	// Decide in customer order, and in order of arrival within a customer: concurrent batches
	// then append to customers' streams in one order, and never wait on each other in a cycle.
	var run []int
	for i := range jobs {
		if !answered[i] {
			run = append(run, i)
		}
	}
	slices.SortStableFunc(run, func(x, y int) int { return cmp.Compare(jobs[x].c.customerID, jobs[y].c.customerID) })
	for _, i := range run {
		// A new subscription's stream is empty: the state is the zero Subscription, without a
		// load. (Were the id taken, the append at version 0 would fail the batch, and the
		// command would meet the stream alone.)
		if outcomes[i], err = a.decide(ctx, tx, writes, jobs[i].c, jobs[i].meta, domain.Subscription{}); err != nil {
			return nil, nil, err
		}
		results[i].resp = outcomes[i].resp
	}
	keys = keys[:0]
	var resps []storedResponse
	for _, i := range run {
		if jobs[i].idem != nil {
			keys, resps = append(keys, jobs[i].idem), append(resps, results[i].resp)
		}
	}
	if err := writes.FlushWith(ctx, func(b *pgx.Batch) { queueRecordKeys(b, keys, resps) }); err != nil {
		return nil, nil, err
	}
	for _, i := range run {
		if o := outcomes[i]; o.events != nil && (eventstore.SnapshotLoad{}).ShouldSnapshot(a.snapshotEvery, len(o.events)) {
			a.saveSnapshot(ctx, tx, jobs[i].c.subscriptionID, o.sub)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, err
	}
	return results, outcomes, nil
}
