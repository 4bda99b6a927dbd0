package projections_test

import (
	"testing"

	"github.com/billing-oss/billing/projections"
)

func TestRegistry(t *testing.T) {
	all := projections.Projectors()
	if len(all) == 0 {
		t.Fatal("no projectors registered")
	}
	seen := map[string]bool{}
	for _, p := range all {
		if seen[p.Name()] {
			t.Errorf("two projectors are called %q", p.Name())
		}
		seen[p.Name()] = true
		got, ok := projections.ProjectorByName(p.Name())
		if !ok || got.Name() != p.Name() {
			t.Errorf("ProjectorByName(%q) = %v, %t", p.Name(), got, ok)
		}
		if _, ok := p.(projections.Rebuildable); !ok {
			t.Errorf("projector %q cannot be rebuilt", p.Name())
		}
	}
	for _, name := range []string{projections.SubscriptionsName, projections.InvoicesName, projections.EntitlementsName} {
		if !seen[name] {
			t.Errorf("the %s projector is not registered", name)
		}
	}
	if p, ok := projections.ProjectorByName("nope"); ok {
		t.Errorf("ProjectorByName(nope) = %v", p)
	}
}
