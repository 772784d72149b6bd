package procnettest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medledger/medledger/testnet/procnet"
)

// LiarPackage is the test-only program that serves wallets a stopped node's chain with a lie.
const LiarPackage = "github.com/medledger/medledger/testnet/procnet/liar"

var liarProgram = &program{pkg: LiarPackage, name: "liar"}

// Liar is a running liar program (testnet/procnet/liar) in a stopped node's home.
type Liar struct {
	cmd  *exec.Cmd
	done chan struct{}
	// Peer is its peer id (the node's); Addrs its multiaddrs with /p2p/Peer; Height the height
	// its frozen store reached.
	Peer    string
	Addrs   []string
	Height  uint64
	LogPath string
}

// StartLiar starts the liar program in node i's home, telling lie (a lighttest.Lie), and waits
// until it serves. Node i must be stopped. The liar is stopped when the test ends, or by Close.
func StartLiar(tb testing.TB, nw *procnet.Network, i int, lie string) *Liar {
	tb.Helper()
	if nw.Running(i) {
		tb.Fatalf("node%d is running: stop it before a liar takes its home", i)
	}
	l := &Liar{LogPath: filepath.Join(nw.Dir, "liar"+strconv.Itoa(i)+".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(l.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close() // the child holds its own descriptor
	l.cmd = exec.Command(liarProgram.binary(tb), "--home", nw.Home(i), "--lie", lie)
	l.cmd.Stderr = logf
	l.cmd.SysProcAttr = procnet.ChildProcAttr()
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var r struct {
			Event  string   `json:"event"`
			Peer   string   `json:"peer"`
			Addrs  []string `json:"addrs"`
			Height uint64   `json:"height"`
		}
		if !sc.Scan() {
			ready <- sc.Err()
			return
		}
		err := json.Unmarshal(sc.Bytes(), &r)
		l.Peer, l.Addrs, l.Height = r.Peer, r.Addrs, r.Height
		ready <- err
		for sc.Scan() {
		}
	}()
	go func() {
		_ = l.cmd.Wait()
		close(l.done)
	}()
	tb.Cleanup(func() {
		l.Close()
		if tb.Failed() {
			tb.Logf("---- liar log tail (%s) ----\n%s", l.LogPath, tail(l.LogPath, 4000))
		}
	})
	select {
	case err := <-ready:
		if err != nil || l.Peer == "" {
			tb.Fatalf("liar did not start (%v); log:\n%s", err, tail(l.LogPath, 4000))
		}
	case <-time.After(time.Minute):
		tb.Fatalf("liar did not start within a minute; log:\n%s", tail(l.LogPath, 4000))
	}
	return l
}

// Addr is the liar's loopback TCP multiaddr.
func (l *Liar) Addr(tb testing.TB) string {
	tb.Helper()
	for _, a := range l.Addrs {
		if strings.Contains(a, "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	tb.Fatalf("liar has no loopback TCP address: %v", l.Addrs)
	return ""
}

// Close stops the liar (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (l *Liar) Close() {
	select {
	case <-l.done:
		return
	default:
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		_ = l.cmd.Process.Kill()
		<-l.done
	}
}
