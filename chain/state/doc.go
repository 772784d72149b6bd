// Package state is MedLedger's deterministic state machine: given a read-only view of committed
// state, a block header and its transactions, it returns the change set to commit and a result per
// transaction. It has no clock, no randomness, no goroutines and no I/O (a test enforces this);
// time arrives as the header's block time.
package state
