// Package testnet generates and drives MedLedger test networks: the deterministic simulation of
// many replicas (testnet/sim), the purity checks for the pure cores (testnet/purecheck), and, in
// later work, multi-process and docker compose networks.
package testnet
