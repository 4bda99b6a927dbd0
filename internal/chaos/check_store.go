package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// versionGaps: every stream's versions are exactly 1..n (the unique index rules out
// duplicates, not holes), and every event decodes.
func (c *checker) versionGaps() {
	for _, bad := range c.store.bad {
		c.report(CheckReadable, "%s", bad)
	}
	for _, id := range c.store.order {
		events := c.store.streams[id]
		for i, e := range events {
			if e.Version != int64(i+1) {
				c.report(CheckVersionGap, "stream %s (%s): version %d where %d was due (%d events, last version %d)",
					id, e.StreamType, e.Version, i+1, len(events), events[len(events)-1].Version)
				break
			}
		}
	}
}

// answerJSON is what the checker reads from the answers it is held to: a subscription
// (create, cancel, pause, …), a change result ({subscription, upgrade}), an upgrade (202), or
// a problem naming an upgrade (402).
type answerJSON struct {
	subscriptionAnswer
	Subscription *subscriptionAnswer `json:"subscription"`
	Upgrade      *struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"upgrade"`
	SubscriptionID string `json:"subscription_id"` // of an upgrade (202)
	UpgradeID      string `json:"upgrade_id"`      // of a problem (402, 409)
}

type subscriptionAnswer struct {
	ID                string `json:"id"`
	CustomerID        string `json:"customer_id"`
	PlanID            string `json:"plan_id"`
	Status            string `json:"status"`
	Seats             int64  `json:"seats"`
	MRR               int64  `json:"mrr"`
	CancelAtPeriodEnd bool   `json:"cancel_at_period_end"`
	Version           int64  `json:"version"`
}

// ackedInStore: every acknowledged answer's effect is in the store. A 201 create's stream
// exists and starts with subscription.created for the answered id; a 200 answer carrying a
// subscription at version v is what the stream folds to at v; a completed upgrade in a change
// result was applied at that version; a 402 names a saga aborted for the decline; a 202 names a
// saga of that subscription. Answers that change no subscription (the test clock, API keys) are
// not looked at.
func (c *checker) ackedInStore(_ context.Context, acks []Ack) error {
	for _, a := range acks {
		if a.Method != http.MethodPost || !strings.HasPrefix(a.Path, "/v1/subscriptions") {
			continue
		}
		var ans answerJSON
		var into any = &ans
		if a.Status >= 300 { // a problem: its status is a number; only its upgrade id matters
			into = &struct {
				UpgradeID *string `json:"upgrade_id"`
			}{&ans.UpgradeID}
		}
		if len(a.Answer) > 0 {
			if err := json.Unmarshal(a.Answer, into); err != nil {
				c.report(CheckAckedInStore, "ack %s (%s %s → %d): answer does not decode: %v", a.Key, a.Method, a.Path, a.Status, err)
				continue
			}
		}
		what := fmt.Sprintf("ack %s (%s %s → %d)", a.Key, a.Method, a.Path, a.Status)
		pathID := subscriptionInPath(a.Path)
		switch {
		case a.Status == http.StatusCreated && a.Path == "/v1/subscriptions":
			c.ackedSubscription(what, a.Key, "", ans.subscriptionAnswer, true)
		case a.Status == http.StatusOK && ans.Subscription != nil:
			c.ackedSubscription(what, a.Key, pathID, *ans.Subscription, false)
			if u := ans.Upgrade; u != nil {
				c.ackedUpgrade(what, pathID, u.ID, func(up domain.Upgrade) string {
					if up.Status != domain.UpgradeCompletedStatus || up.AppliedVersion != ans.Subscription.Version {
						return fmt.Sprintf("answered completed at subscription version %d, stored %s at version %d",
							ans.Subscription.Version, up.Status, up.AppliedVersion)
					}
					return ""
				})
			}
		case a.Status == http.StatusOK && ans.ID != "" && ans.Version > 0:
			c.ackedSubscription(what, a.Key, pathID, ans.subscriptionAnswer, false)
		case a.Status == http.StatusPaymentRequired:
			if ans.UpgradeID == "" {
				c.report(CheckAckedInStore, "%s: a decline answer naming no upgrade", what)
				continue
			}
			c.ackedUpgrade(what, pathID, ans.UpgradeID, func(up domain.Upgrade) string {
				if up.Status != domain.UpgradeAbortedStatus || up.Reason != domain.UpgradeReasonDeclined {
					return fmt.Sprintf("answered declined, stored %s (%s)", up.Status, up.Reason)
				}
				return ""
			})
		case a.Status == http.StatusConflict && ans.UpgradeID != "":
			c.ackedUpgrade(what, pathID, ans.UpgradeID, func(up domain.Upgrade) string {
				if up.Status != domain.UpgradeAbortedStatus {
					return fmt.Sprintf("answered aborted, stored %s", up.Status)
				}
				return ""
			})
		case a.Status == http.StatusAccepted && ans.ID != "":
			c.ackedUpgrade(what, pathID, ans.ID, func(domain.Upgrade) string { return "" })
		}
	}
	return nil
}

// subscriptionInPath returns the id in /v1/subscriptions/{id}/…, or "".
func subscriptionInPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/v1/subscriptions/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return id
}

// ackedSubscription also holds the event at the answered version to the ack's idempotency key:
// the answer describes what its own request appended (a replay answers the first request's
// answer, under the same key; an upgrade saga's change carries the key of the request that
// started it).
func (c *checker) ackedSubscription(what, key, pathID string, ans subscriptionAnswer, created bool) {
	if pathID != "" && ans.ID != pathID {
		c.report(CheckAckedInStore, "%s: answered subscription %q for the path's %s", what, ans.ID, pathID)
		return
	}
	id, err := uuid.Parse(ans.ID)
	if err != nil {
		c.report(CheckAckedInStore, "%s: answered subscription id %q", what, ans.ID)
		return
	}
	events := c.store.streams[id]
	if len(events) == 0 {
		c.report(CheckAckedInStore, "%s: subscription %s has no stream", what, id)
		return
	}
	if created {
		first, ok := c.store.decoded[events[0].ID].(domain.SubscriptionCreated)
		if !ok || first.SubscriptionID != ans.ID {
			c.report(CheckAckedInStore, "%s: stream %s starts with %s, not the subscription.created answered", what, id, events[0].Type)
			return
		}
	}
	if ans.Version > int64(len(events)) {
		c.report(CheckAckedInStore, "%s: answered version %d, the stream of %s has %d events", what, ans.Version, id, len(events))
		return
	}
	if ans.Version >= 1 && key != "" {
		if got := events[ans.Version-1].Metadata.IdempotencyKey; got != key {
			c.report(CheckAckedInStore, "%s: version %d of %s was appended under key %q, not this request's", what, ans.Version, id, got)
		}
	}
	s := c.store.subscriptionAt(id, ans.Version)
	got := subscriptionAnswer{ID: s.ID, CustomerID: s.CustomerID, PlanID: s.Plan.PlanID, Status: string(s.Status),
		Seats: s.Seats, MRR: s.MRR(), CancelAtPeriodEnd: s.CancelAtPeriodEnd, Version: s.Version}
	if got != ans {
		c.report(CheckAckedInStore, "%s: answered %+v, the stream folds at version %d to %+v", what, ans, ans.Version, got)
	}
}

func (c *checker) ackedUpgrade(what, pathID, upgradeID string, judge func(domain.Upgrade) string) {
	id, err := uuid.Parse(upgradeID)
	if err != nil {
		c.report(CheckAckedInStore, "%s: answered upgrade id %q", what, upgradeID)
		return
	}
	u, ok := c.store.upgrades[id]
	if !ok || !u.Exists() {
		c.report(CheckAckedInStore, "%s: upgrade %s has no stream", what, id)
		return
	}
	if pathID != "" && u.SubscriptionID != pathID {
		c.report(CheckAckedInStore, "%s: upgrade %s is of subscription %s", what, id, u.SubscriptionID)
		return
	}
	if msg := judge(u); msg != "" {
		c.report(CheckAckedInStore, "%s: upgrade %s: %s", what, id, msg)
	}
}

// sagaSource is the metadata source of the events an upgrade saga appends after the request
// that started it (internal/billing/upgrade.go).
const sagaSource = "upgrade saga"

// idempotency: no Idempotency-Key produced two effects. How the service writes metadata: a
// request's events (httpapi/commands.go: the subscription's, its invoice's, its customer's, or
// an upgrade.started) carry its key and are appended in the request's one transaction, together
// with the idempotency record (group commit may put several requests in one transaction, never
// one request in two). A paid change's saga then appends in transactions of its own, each event
// carrying the metadata of the upgrade.started (so the same key), with source "upgrade saga" and
// the upgrade id as causation id. So the events of one key (per actor, the API key's name: keys
// are scoped to the API key) are one effect iff
//
//  1. its request events (all but the saga's) were appended in a single transaction;
//  2. among them at most one subscription.created and at most one upgrade.started;
//  3. within any one transaction, its events on a stream have consecutive versions (nothing of
//     another key in between);
//  4. its saga events were caused by the upgrade its own request started; and
//  5. its saga touched the subscription's stream at most once (the change, or upgrade_failed).
func (c *checker) idempotency() {
	type key struct{ actor, key string }
	groups := map[key][]eventstore.Event{}
	var keys []key
	for _, e := range c.store.events {
		if e.Metadata.IdempotencyKey == "" {
			continue
		}
		k := key{e.Metadata.Actor, e.Metadata.IdempotencyKey}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], e)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].actor < keys[j].actor || keys[i].actor == keys[j].actor && keys[i].key < keys[j].key
	})
	for _, k := range keys {
		events := groups[k]
		name := fmt.Sprintf("key %q (actor %q)", k.key, k.actor)
		requestTx := map[uint64]int{}
		created, started := 0, map[string]bool{}
		var saga []eventstore.Event
		for _, e := range events {
			if e.Metadata.Source == sagaSource {
				saga = append(saga, e)
				continue
			}
			requestTx[e.Position.TransactionID]++
			switch e.Type {
			case "subscription.created":
				created++
			case "upgrade.started":
				started[e.StreamID.String()] = true
			}
		}
		if len(requestTx) > 1 {
			c.report(CheckIdempotency, "%s: its request's events were appended by %d transactions %v", name, len(requestTx), requestTx)
		}
		if created > 1 {
			c.report(CheckIdempotency, "%s: %d subscription.created", name, created)
		}
		if len(started) > 1 {
			c.report(CheckIdempotency, "%s: %d upgrades started", name, len(started))
		}
		// Rule 3: per transaction and stream, consecutive versions.
		type txStream struct {
			tx     uint64
			stream uuid.UUID
		}
		last := map[txStream]int64{}
		for _, e := range events { // ordered by stream, then version
			ts := txStream{e.Position.TransactionID, e.StreamID}
			if v, ok := last[ts]; ok && e.Version != v+1 {
				c.report(CheckIdempotency, "%s: stream %s has its versions %d and %d from one transaction, with another key's between",
					name, e.StreamID, v, e.Version)
			}
			last[ts] = e.Version
		}
		subscriptionTouches := map[uuid.UUID]int{}
		for _, e := range saga {
			if !started[e.Metadata.CausationID] {
				c.report(CheckIdempotency, "%s: saga event %s (%s v%d) caused by upgrade %q, which this key did not start",
					name, e.Type, e.StreamID, e.Version, e.Metadata.CausationID)
			}
			if e.StreamType == eventstore.SubscriptionStream {
				subscriptionTouches[e.StreamID]++
			}
		}
		for id, n := range subscriptionTouches {
			if n > 1 {
				c.report(CheckIdempotency, "%s: its saga appended %d events to subscription %s", name, n, id)
			}
		}
	}
}
