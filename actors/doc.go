// Package actors is a running stack's supervision, as protoactor actors:
// the stack actor (stack.go) spawns one service actor per replica
// (service.go), routes its dependencies' status to it, answers the
// engine's requests (ps, commands, scale, converge) and tears the stack
// down; the logger actor (logger.go) hands service output to the console
// (internal/console) and the log store (internal/logstore). messages.go
// is the protocol between them. The decisions are pure, in the packages
// below: a replica's life cycle (lifecycle), restart, healthcheck and exit
// policies (policy), rolling updates (rollout) and the stack's own
// (supervision); the actors only perform their effects. Only
// internal/engine starts a stack.
package actors
