package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PipelineStatus is GET /v1/pipeline/status.
type PipelineStatus struct {
	HeadPosition *int64 `json:"head_position"`
	RelayLag     int64  `json:"relay_lag_events"`
	Projectors   []struct {
		Name        string `json:"name"`
		LagEvents   int64  `json:"lag_events"`
		Pending     int64  `json:"pending_entries"`
		DeadLetters int64  `json:"dead_letters"`
	} `json:"projectors"`
}

// caughtUp: nothing committed is unpublished or unapplied.
func (p PipelineStatus) caughtUp() bool {
	if p.RelayLag != 0 {
		return false
	}
	for _, pr := range p.Projectors {
		if pr.LagEvents != 0 {
			return false
		}
	}
	return true
}

// DeadLetters is the number of entries in every projector's dead letters (projection_dead_letters).
func (p PipelineStatus) DeadLetters() int64 {
	var n int64
	for _, pr := range p.Projectors {
		n += pr.DeadLetters
	}
	return n
}

func (p PipelineStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "relay lag %d", p.RelayLag)
	for _, pr := range p.Projectors {
		fmt.Fprintf(&b, ", %s lag %d (pending %d, dead letters %d)", pr.Name, pr.LagEvents, pr.Pending, pr.DeadLetters)
	}
	return b.String()
}

// Settled is how the cluster ended once the load stopped.
type Settled struct {
	Took     time.Duration
	Pipeline PipelineStatus
	Waited   string // what it waited for last ("" if settled at once): where a slow settle spent its time
}

// Settle waits, for at most within, until the cluster has done everything the load left it:
// the billing work due on the test clock (it moves the clock to its own time, which answers
// once the due work is done, until no due row is left: work a killed process held comes free
// when its lease ends) and the pipeline (relay and projectors caught up with the store, asked
// of a running process).
func (c *Cluster) Settle(ctx context.Context, within time.Duration) (Settled, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.databaseURL)
	if err != nil {
		return Settled{}, fmt.Errorf("settle: %w", err)
	}
	defer conn.Close(context.Background())
	client := &http.Client{Timeout: 30 * time.Second}
	var last Settled
	var why string
	note := func(reason string) {
		if ctx.Err() == nil { // the deadline's own errors say nothing about the cluster
			why = reason
		}
	}
	for {
		due, dueErr := dueWork(ctx, conn)
		for i, url := range c.URLs() {
			if !c.Running(i) {
				continue
			}
			var clock struct {
				Now time.Time `json:"now"`
			}
			if err := c.call(ctx, client, url, http.MethodGet, "/v1/test/clock", nil, &clock); err != nil {
				note(err.Error())
				continue
			}
			if due != "" {
				body, _ := json.Marshal(map[string]any{"now": clock.Now.UTC().Format(time.RFC3339)})
				if err := c.call(ctx, client, url, http.MethodPost, "/v1/test/clock", body, nil); err != nil {
					note(err.Error())
					continue
				}
				due, dueErr = dueWork(ctx, conn)
			}
			if err := c.call(ctx, client, url, http.MethodGet, "/v1/pipeline/status", nil, &last.Pipeline); err != nil {
				note(err.Error())
				continue
			}
			switch {
			case dueErr != nil:
				note(dueErr.Error())
			case due != "":
				note("billing work still due: " + due)
			case !last.Pipeline.caughtUp():
				note("pipeline behind: " + last.Pipeline.String())
			default:
				last.Took, last.Waited = time.Since(start), why
				return last, nil
			}
			break
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("not settled after %s; last seen: %s", within, why)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// dueWork describes the billing_schedule rows due on the test clock ("" when none).
func dueWork(ctx context.Context, conn *pgx.Conn) (string, error) {
	rows, err := conn.Query(ctx, `SELECT s.kind, s.stream_id::text, s.due_at, coalesce(s.claimed_until > now(), false)
		FROM billing_schedule s, test_clock c WHERE s.due_at <= c.now ORDER BY s.due_at LIMIT 10`)
	if err != nil {
		return "", fmt.Errorf("read billing_schedule: %w", err)
	}
	var parts []string
	var kind, id string
	var dueAt time.Time
	var claimed bool
	_, err = pgx.ForEachRow(rows, []any{&kind, &id, &dueAt, &claimed}, func() error {
		parts = append(parts, fmt.Sprintf("%s %s due %s claimed=%t", kind, id, dueAt.UTC().Format(time.RFC3339), claimed))
		return nil
	})
	return strings.Join(parts, "; "), err
}

// call sends one request with the cluster's key and decodes a 200 answer into out.
func (c *Cluster) call(ctx context.Context, client *http.Client, base, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s%s: %d %s", method, base, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}
