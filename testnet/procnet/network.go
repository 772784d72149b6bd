package procnet

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medledger/medledger/chain"
)

// Defaults for a Network's knobs.
const (
	// DefaultStopTimeout is how long Stop waits for a clean exit after SIGTERM before SIGKILL.
	DefaultStopTimeout = 30 * time.Second
	// PortStride is the distance between consecutive nodes' ports (testnet init's layout: node i
	// listens for p2p on base+PortStride*i and serves its API on base+PortStride*i+1).
	PortStride = 10
)

// Network is a local network of medledger node processes sharing one directory.
type Network struct {
	// Bin is the medledger binary that runs every child.
	Bin string
	// Dir holds the homes DIR/node<i>, DIR/licensing.key and the logs DIR/node<i>.log.
	Dir string
	// N is the number of nodes; BasePort the first node's p2p port.
	N, BasePort int
	// LogLevel is passed to each node as --log-level ("info" unless changed before Start).
	LogLevel string
	// StopTimeout bounds Stop's wait for a clean exit (DefaultStopTimeout unless changed).
	StopTimeout time.Duration
	// Args are extra command-line arguments for node i's next starts (e.g. --cpuprofile FILE).
	Args map[int][]string

	client *http.Client
	// bulk has no timeout of its own: Request is bounded by its context (imports wait for blocks).
	bulk *http.Client

	mu    sync.Mutex
	procs []*proc // index i: the current or last process of node i, nil if never started
	apis  []string
	tok   []string
}

// proc is one child process; done closes when it has been reaped.
type proc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	err   error // exit status, valid after done
	start time.Time
}

// Init runs `bin testnet init` for n authorities in dir (which must not hold a network yet) and
// returns the network, with no node started.
func Init(ctx context.Context, bin, dir string, n, basePort int) (*Network, error) {
	return InitWith(ctx, bin, dir, n, basePort)
}

// InitWith is Init with more `testnet init` flags (such as --test-clock).
func InitWith(ctx context.Context, bin, dir string, n, basePort int, flags ...string) (*Network, error) {
	if n < 1 {
		return nil, fmt.Errorf("procnet: need at least one node, got %d", n)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("procnet: %w", err)
	}
	args := append([]string{"testnet", "init", "--authorities", strconv.Itoa(n), "--dir", dir, "--base-port", strconv.Itoa(basePort)}, flags...)
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("procnet: %s testnet init: %w\n%s", bin, err, out)
	}
	return Open(bin, dir, n, basePort), nil
}

// Open returns a handle on a network that testnet init already created in dir.
func Open(bin, dir string, n, basePort int) *Network {
	return &Network{
		Bin: bin, Dir: dir, N: n, BasePort: basePort, LogLevel: "info", StopTimeout: DefaultStopTimeout,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
		bulk:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		procs:  make([]*proc, n), apis: make([]string, n), tok: make([]string, n),
	}
}

// Home is node i's home directory.
func (nw *Network) Home(i int) string { return filepath.Join(nw.Dir, "node"+strconv.Itoa(i)) }

// LogPath is the file that collects node i's stdout and stderr, across restarts.
func (nw *Network) LogPath(i int) string { return filepath.Join(nw.Dir, "node"+strconv.Itoa(i)+".log") }

// P2PPort is node i's libp2p port (TCP and UDP/QUIC).
func (nw *Network) P2PPort(i int) int { return nw.BasePort + PortStride*i }

// Genesis reads the network's genesis from node 0's home.
func (nw *Network) Genesis() (*chain.Genesis, error) {
	data, err := os.ReadFile(filepath.Join(nw.Home(0), "genesis.json"))
	if err != nil {
		return nil, fmt.Errorf("procnet: %w", err)
	}
	return chain.ParseGenesisJSON(data)
}

// LicensingKey reads the genesis licensing authority's key (DIR/licensing.key, a hex seed).
func (nw *Network) LicensingKey() (chain.PrivKey, error) {
	return readSeed(filepath.Join(nw.Dir, "licensing.key"))
}

func readSeed(path string) (chain.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return chain.PrivKey{}, fmt.Errorf("procnet: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return chain.PrivKey{}, fmt.Errorf("procnet: %s: %w", path, err)
	}
	return chain.PrivKeyFromSeed(seed)
}

// Start starts node i (again, after Stop or Kill). Its output is appended to LogPath(i).
func (nw *Network) Start(i int) error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if p := nw.procs[i]; p != nil && !p.exited() {
		return fmt.Errorf("procnet: node%d is already running (pid %d)", i, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(nw.LogPath(i), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("procnet: %w", err)
	}
	defer f.Close() // the child holds its own descriptor
	fmt.Fprintf(f, "==== procnet: starting node%d at %s ====\n", i, time.Now().Format(time.RFC3339Nano))
	level := nw.LogLevel
	if level == "" {
		level = "info"
	}
	args := append([]string{"node", "--home", nw.Home(i), "--log-level", level}, nw.Args[i]...)
	cmd := exec.Command(nw.Bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("procnet: start node%d: %w", i, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), start: time.Now()}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	nw.procs[i] = p
	return nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (nw *Network) proc(i int) *proc {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.procs[i]
}

// Running reports whether node i's process is alive.
func (nw *Network) Running(i int) bool {
	p := nw.proc(i)
	return p != nil && !p.exited()
}

// PID is node i's current process id, or 0 if it is not running.
func (nw *Network) PID(i int) int {
	if p := nw.proc(i); p != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// Exited reports, for a node that was started and has exited, how it exited; ok is false while
// it runs or if it never ran.
func (nw *Network) Exited(i int) (err error, ok bool) {
	p := nw.proc(i)
	if p == nil || !p.exited() {
		return nil, false
	}
	return p.err, true
}

// Stop sends SIGTERM to node i's process group and waits up to StopTimeout for it to exit; a
// node that does not exit by then is killed. It returns an error unless the node exited with
// status 0 in time.
func (nw *Network) Stop(i int) error {
	p := nw.proc(i)
	if p == nil || p.exited() {
		return fmt.Errorf("procnet: node%d is not running", i)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	timeout := nw.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("procnet: node%d exited after SIGTERM: %w", i, p.err)
		}
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("procnet: node%d did not exit within %s of SIGTERM; killed", i, timeout)
	}
}

// Kill sends SIGKILL to node i's process group (a crash: no shutdown code runs) and waits until
// the process is reaped.
func (nw *Network) Kill(i int) error {
	p := nw.proc(i)
	if p == nil || p.exited() {
		return fmt.Errorf("procnet: node%d is not running", i)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return nil
}

// StopAll stops every running node at once (SIGTERM, then SIGKILL after StopTimeout) and waits
// for all of them; it returns the errors of nodes that did not exit cleanly.
func (nw *Network) StopAll() error {
	errs := make([]error, nw.N)
	var wg sync.WaitGroup
	for i := range nw.N {
		if !nw.Running(i) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = nw.Stop(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close kills every node that still runs and waits for each to be reaped. It is safe to call
// more than once and after StopAll.
func (nw *Network) Close() {
	for i := range nw.N {
		if nw.Running(i) {
			_ = nw.Kill(i)
		}
	}
	nw.client.CloseIdleConnections()
	nw.bulk.CloseIdleConnections()
}

// LogTail returns about the last n bytes of node i's log, for error messages.
func (nw *Network) LogTail(i, n int) string {
	b, err := os.ReadFile(nw.LogPath(i))
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			b = b[j+1:]
		}
	}
	return string(b)
}
