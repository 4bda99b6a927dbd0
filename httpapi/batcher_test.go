package httpapi

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatcher: jobs submitted together are committed in batches of at most MaxBatch, a full batch
// does not wait for the delay, no more than Concurrency batches commit at once, and every job
// gets the result its batch gave it.
func TestBatcher(t *testing.T) {
	t.Parallel()
	b := newBatcher(GroupCommit{MaxBatch: 4, Delay: time.Hour, Concurrency: 2})
	var running, most atomic.Int32
	var mu sync.Mutex
	var sizes []int
	commit := func(jobs []*createJob) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(10 * time.Millisecond)
		running.Add(-1)
		mu.Lock()
		sizes = append(sizes, len(jobs))
		mu.Unlock()
		for i, j := range jobs {
			j.done <- jobResult{resp: storedResponse{status: 200 + i, body: []byte(j.meta.CorrelationID)}}
		}
	}
	const jobs = 12 // three full batches: a wait for the hour-long delay would time the test out
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() {
			j := &createJob{done: make(chan jobResult, 1)}
			j.meta.CorrelationID = string(rune('a' + i))
			res := b.submit(j, commit)
			if string(res.resp.body) != j.meta.CorrelationID {
				t.Errorf("job %d got the result of job %s", i, res.resp.body)
			}
		})
	}
	wg.Wait()
	if len(sizes) != 3 || sizes[0] != 4 || sizes[1] != 4 || sizes[2] != 4 {
		t.Errorf("batches of %v, want three of 4", sizes)
	}
	if m := most.Load(); m > 2 {
		t.Errorf("%d batches committed at once, want at most 2", m)
	}

	// A lone job waits for the delay, not longer.
	b = newBatcher(GroupCommit{MaxBatch: 4, Delay: 20 * time.Millisecond})
	start := time.Now()
	b.submit(&createJob{done: make(chan jobResult, 1)}, func(jobs []*createJob) {
		if len(jobs) != 1 {
			t.Errorf("a lone job's batch holds %d jobs", len(jobs))
		}
		jobs[0].done <- jobResult{}
	})
	if d := time.Since(start); d < 20*time.Millisecond || d > 5*time.Second {
		t.Errorf("a lone job was committed after %s, want after the 20ms delay", d)
	}
}
