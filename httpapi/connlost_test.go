package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/billing"
)

// cuttingProxy forwards TCP connections to Postgres. Once armed, the next bytes a client sends
// are forwarded and then every connection is closed without the server's answer: what the
// API sees when Postgres stops (or crashes) while it waits for a statement's result.
type cuttingProxy struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newCuttingProxy(t *testing.T, target string) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cutAll() })
	go p.serve()
	return p
}

func (p *cuttingProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go io.Copy(client, server)
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					server.Write(buf[:n])
					if p.armed.CompareAndSwap(true, false) {
						p.cutAll()
						return
					}
				}
				if err != nil {
					server.Close()
					return
				}
			}
		}()
	}
}

func (p *cuttingProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// throughCuttingProxy is a pool of 2 connections to db's database through a cuttingProxy.
func throughCuttingProxy(t *testing.T, db *pgxpool.Pool) (*cuttingProxy, *pgxpool.Pool) {
	t.Helper()
	pcfg := db.Config()
	proxy := newCuttingProxy(t, net.JoinHostPort(pcfg.ConnConfig.Host, strconv.Itoa(int(pcfg.ConnConfig.Port))))
	host, port, _ := net.SplitHostPort(proxy.ln.Addr().String())
	pcfg.ConnConfig.Host = host
	p, _ := strconv.Atoi(port)
	pcfg.ConnConfig.Port = uint16(p)
	pcfg.ConnConfig.Fallbacks = nil
	pcfg.MaxConns = 2
	through, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(through.Close)
	return proxy, through
}

// TestConnectionLostMidStatement: a command whose database connection dies after it sent a
// statement (Postgres stopped, crashed or restarted; the fault suite's
// TestChaosPostgresRestarted found it) is a 503 problem to retry with the same key, not a 500;
// and the retry is answered once, as if the first had never been.
func TestConnectionLostMidStatement(t *testing.T) {
	t.Parallel()
	var proxy *cuttingProxy
	api := newTestAPIWith(t, func(cfg *httpapi.Config) {
		proxy, cfg.DB = throughCuttingProxy(t, cfg.DB)
	})
	s := api.create("pro_monthly", 2)
	before := api.eventCount()

	proxy.armed.Store(true)
	r := api.do("POST", "/v1/subscriptions/"+s.ID+"/seats", map[string]any{"seats": 1},
		withHeader("Idempotency-Key", "lost-connection-1"))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("connection lost mid-statement: %d %s %s; want 503 application/problem+json",
			r.status, r.header.Get("Content-Type"), r.body)
	}
	// The pool may still hold the other connection the proxy cut: a client retries 503s.
	for range 3 {
		if r = api.do("POST", "/v1/subscriptions/"+s.ID+"/seats", map[string]any{"seats": 1},
			withHeader("Idempotency-Key", "lost-connection-1")); r.status != http.StatusServiceUnavailable {
			break
		}
	}
	if r.status != http.StatusOK {
		t.Fatalf("the retry: %d %s, want 200", r.status, r.body)
	}
	var res changeResult
	r.decode(t, &res)
	if res.Subscription.Seats != 1 {
		t.Errorf("after the retry: %d seats, want 1", res.Subscription.Seats)
	}
	if got := api.eventCount() - before; got < 1 {
		t.Errorf("the retry appended %d events, want the seat change", got)
	}
	var again changeResult
	r = api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/seats", map[string]any{"seats": 1},
		withHeader("Idempotency-Key", "lost-connection-1"))
	if err := json.Unmarshal(r.body, &again); err != nil || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a second retry: replayed %q (%v), want the first answer replayed", r.header.Get("Idempotent-Replayed"), err)
	}
}

// TestTestClockConnectionLost: a clock move whose database connection dies is a 503 to retry,
// not 422 invalid-fields (which told a client not to retry what was the database's fault). The
// fault suite's clock mover met it while Postgres restarted.
func TestTestClockConnectionLost(t *testing.T) {
	t.Parallel()
	var proxy *cuttingProxy
	api := newTestAPIWith(t, func(cfg *httpapi.Config) {
		var db *pgxpool.Pool
		proxy, db = throughCuttingProxy(t, cfg.DB)
		clock, err := billing.NewTestClock(context.Background(), db, testStart)
		if err != nil {
			t.Fatal(err)
		}
		// The API keys are read through the cache, so the cut meets the clock's own statement.
		cfg.Clock, cfg.TestClock, cfg.APIKeyCacheTTL = clock, clock, time.Minute
	})
	admin := withKey(api.keys[httpapi.ScopeAdmin])
	api.must(http.StatusOK, "GET", "/v1/test/clock", nil, admin) // the key is cached now

	proxy.armed.Store(true)
	r := api.do("POST", "/v1/test/clock", map[string]any{"now": testStart.Add(24 * time.Hour)}, admin)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("connection lost while setting the clock: %d %s %s; want 503 application/problem+json",
			r.status, r.header.Get("Content-Type"), r.body)
	}
	for range 3 {
		if r = api.do("POST", "/v1/test/clock", map[string]any{"now": testStart.Add(24 * time.Hour)}, admin); r.status != http.StatusServiceUnavailable {
			break
		}
	}
	if r.status != http.StatusOK {
		t.Fatalf("the retry: %d %s, want 200", r.status, r.body)
	}
	// Backwards is still the client's mistake.
	api.must(http.StatusUnprocessableEntity, "POST", "/v1/test/clock", map[string]any{"now": testStart}, admin)
}
