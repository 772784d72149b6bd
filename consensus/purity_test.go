package consensus

import (
	"testing"

	"github.com/medledger/medledger/testnet/purecheck"
)

// The engine must stay a pure state machine: no goroutines, clock, randomness or I/O.
func TestPurity(t *testing.T) { purecheck.Check(t, ".") }
