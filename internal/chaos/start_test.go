package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// service is a Cluster as the checker's and the linearizability tests drive it: requests to
// one process at a time, and the checker's Target.
type service struct {
	t      *testing.T
	c      *Cluster
	target Target
	client *http.Client
}

// startForCheck starts a cluster of processes on the shared servers, with 4 stream partitions
// (fewer keys to read back, still more than one).
func startForCheck(t *testing.T, processes int) *service {
	t.Helper()
	db, rdb := sharedServers()
	c := StartCluster(t, ClusterConfig{Processes: processes, DatabaseURL: db, RedisURL: rdb,
		Env: []string{"STREAM_PARTITIONS=4", "BILLING_POLL=100ms"}, KeepLogs: keepLogs()})
	return &service{t: t, c: c, target: c.Target(), client: &http.Client{Timeout: 15 * time.Second}}
}

// do sends a request to the i-th process and returns the status and body; an idempotency key
// is sent when key is not empty.
func (s *service) do(i int, method, path, key string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.target.APIURLs[i%len(s.target.APIURLs)]+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.target.APIKey)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// settle waits until the cluster has done everything the requests left it to do.
func (s *service) settle() {
	s.t.Helper()
	if _, err := s.c.Settle(context.Background(), 30*time.Second); err != nil {
		s.t.Fatal(err)
	}
}
