package procnettest

import "testing"

// StrangerPackage is the test-only program that plays a non-member peer.
const StrangerPackage = "github.com/medledger/medledger/testnet/procnet/stranger"

var strangerProgram = &program{pkg: StrangerPackage, name: "stranger"}

// StrangerBinary returns the non-member program, built once per test binary.
func StrangerBinary(tb testing.TB) string { return strangerProgram.binary(tb) }
