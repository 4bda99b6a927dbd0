// Package domain is the pure billing model of the subscription service:
// Decide turns a command and the current state into events, Evolve folds an
// event into the state. It does no I/O and never reads the clock; every
// function that needs the time takes it as a parameter, so the same inputs
// always produce the same events.
package domain
