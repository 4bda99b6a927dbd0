package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// claimBatch is how many due rows RunDue leases at a time: one flushed commit for all of them
// instead of one each.
const claimBatch = 16

// RunDue works through every billing_schedule row due by the service clock, earliest first, until
// none is left (rows other processes hold are skipped, and rows whose work fails wait for their
// lease to run out), and returns how many it worked on. Working in due order is what makes a
// test clock moved a year ahead replay the year in order: a renewal makes its invoice due, whose
// collection is worked on before the next renewal. Rows are claimed claimBatch at a time; before
// each later one, RunDue looks for work that became due before it (made by the work just done:
// the renewal's invoice) and, if there is any, gives the rest of the batch back and claims again.
// Collections due close together are worked on together (see together).
// It also gives the rest back once half the lease has gone, so no lease runs out on a row still
// waiting its turn. Calls in one process take turns, so when one returns, no work due by then is
// still in flight in this process (other processes' leases are not waited for).
func (s *Service) RunDue(ctx context.Context) (int, error) {
	s.running.Lock()
	defer s.running.Unlock()
	done := 0
	for ctx.Err() == nil {
		claimed := time.Now()
		jobs, err := s.claim(ctx, s.clock.Now(), s.lease, claimBatch)
		if err != nil || len(jobs) == 0 {
			return done, err
		}
		for i := 0; i < len(jobs); {
			j := jobs[i]
			if i > 0 {
				again := time.Since(claimed) > s.lease/2
				if !again && j.dueAt.After(jobs[i-1].dueAt) {
					if again, err = s.dueBefore(ctx, j.dueAt); err != nil {
						return done, err
					}
				}
				if again {
					if err := s.release(ctx, jobs[i:]); err != nil {
						return done, err
					}
					break
				}
			}
			n := together(jobs[i:])
			if err := s.work(ctx, jobs[i:i+n]); err != nil {
				s.log.ErrorContext(ctx, "billing work failed; it will be retried", "kind", j.kind, "stream_id", j.id, "jobs", n, "error", err)
			}
			done += n
			i += n
		}
	}
	return done, ctx.Err()
}

// together is how many of jobs, from the first, are worked on at once: the collections due
// within a day of the first, or else the first job alone. Worked on together, collections
// share their reads and one transaction (CollectMany), and due order still holds: a collection
// makes nothing due sooner than a day after it (dunning retries are whole days apart; it never
// brings a renewal forward).
func together(jobs []job) int {
	n := 1
	if jobs[0].kind == kindCollect {
		for n < len(jobs) && jobs[n].kind == kindCollect && jobs[n].dueAt.Before(jobs[0].dueAt.Add(24*time.Hour)) {
			n++
		}
	}
	return n
}

// work does jobs: one job, or collections (see together).
func (s *Service) work(ctx context.Context, jobs []job) error {
	j := jobs[0]
	switch j.kind {
	case kindRenewal:
		return s.Renew(ctx, j.id)
	case kindTrialReminder:
		return s.NotifyTrialWillEnd(ctx, j.id)
	case kindCollect:
		ids := make([]uuid.UUID, len(jobs))
		for i, j := range jobs {
			ids[i] = j.id
		}
		return s.CollectMany(ctx, ids)
	case kindUpgrade:
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := s.AdvanceUpgrade(ctx, j.id)
		return err
	}
	return fmt.Errorf("unknown billing work %q", j.kind)
}

// Wake makes Run look for due work now rather than at its next poll.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run works through due rows every poll interval (and whenever woken) until ctx is done. Every
// billingd process runs it; rows are leased, so they share the work.
func (s *Service) Run(ctx context.Context, poll time.Duration) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if _, err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "billing scheduler", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}
