// Package node assembles and runs a MedLedger node: it owns the one goroutine that drives a
// replica, turning the replica's requested timeouts into real timers and its outgoing messages
// into transport sends, and it serializes transaction submissions and status queries onto that
// goroutine. Transports are pluggable: an in-process bus for local networks and tests, the
// consensus reactor over the libp2p host for real deployments.
package node
