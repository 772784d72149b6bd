package procnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Port range FreeBasePort draws from: above the registered well-known services, below Linux's
// default ephemeral range (32768–60999), so an outgoing connection rarely takes a node's port.
const (
	portLow  = 20000
	portHigh = 32000
)

// FreeBasePort picks a base port for n nodes at which every port the nodes use (p2p on TCP and
// UDP, the API on TCP) is free on 127.0.0.1 right now. It draws candidates at random, so
// parallel test processes rarely race for the same range; a port taken between the probe and the
// node's start shows up as a node that fails to start.
func FreeBasePort(n int) (int, error) {
	span := PortStride * n
	for range 200 {
		base := portLow + PortStride*rand.IntN((portHigh-portLow-span)/PortStride)
		if rangeFree(base, n) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("procnet: no free port range for %d nodes in %d..%d", n, portLow, portHigh)
}

func rangeFree(base, n int) bool {
	for i := range n {
		p2p := base + PortStride*i
		if !tcpFree(p2p) || !udpFree(p2p) || !tcpFree(p2p+1) {
			return false
		}
	}
	return true
}

func tcpFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

func udpFree(port int) bool {
	c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	return c.Close() == nil
}
