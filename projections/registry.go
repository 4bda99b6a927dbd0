package projections

// Projectors returns every read-model projector the service runs, each with its own consumer
// group and progress. billingd starts one consumer per projector; billingctl rebuilds and the
// dead-letter tool find them here by name.
func Projectors() []Projector {
	return []Projector{NewSubscriptions(), NewInvoices(), NewEntitlements()}
}

// ProjectorByName returns the projector called name.
func ProjectorByName(name string) (Projector, bool) {
	for _, p := range Projectors() {
		if p.Name() == name {
			return p, true
		}
	}
	return nil, false
}
