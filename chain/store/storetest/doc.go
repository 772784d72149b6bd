// Package storetest holds what tests of chain/store and its backends share: a suite that every
// backend must pass (Run), deterministic chains to commit (Genesis, GenBlock, Extend), and a KV
// wrapper that dies after a chosen number of writes (FaultyKV), so that a backend's tests can put
// a crash between any two writes of a commit.
package storetest
