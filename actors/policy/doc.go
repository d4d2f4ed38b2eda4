// Package policy holds the pure decision objects that a service actor
// consults: RestartTracker says whether and when to restart an exited
// process, HealthTracker turns healthcheck probe results into a health state.
//
// Neither object starts goroutines, sleeps or reads the wall clock: time comes
// from an injected Clock, so the tests (and the actor tests, through
// FakeClock) drive it. Neither is safe for concurrent use; each belongs to one
// actor.
package policy
