// Package sim runs a whole MedLedger network in one goroutine from a seed: N replicas with the
// real consensus engine, state machine and crashable in-memory stores, over a simulated network
// that drops, delays, duplicates and reorders messages, partitions and heals, crashes and restarts
// nodes, and hosts Byzantine authorities (equivocation, amnesia, invalid proposals, withholding).
// A checker verifies the safety invariants after every event and liveness after the network
// heals; a failing run reports its seed, and the same seed replays the same run exactly.
package sim
