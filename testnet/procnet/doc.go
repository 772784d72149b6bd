// Package procnet runs a local MedLedger network as separate operating-system processes: it
// creates the network with `medledger testnet init`, starts, stops (SIGTERM) and kills (SIGKILL)
// `medledger node` children, reads their HTTP APIs and waits on conditions with deadlines.
//
// Every child runs in its own process group with its output appended to DIR/node<i>.log; on Linux
// a child also dies with the process that started it, so neither a finished test nor a demo that
// was killed leaves a node behind. Nodes listen on 127.0.0.1 only.
//
// The package does not import testing: the demo and the benchmark use it as they are. Test
// helpers (building the binary once per test binary, picking free ports, cleanup) live in the
// sibling package procnettest.
package procnet
