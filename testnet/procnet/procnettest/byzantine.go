package procnettest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medledger/medledger/testnet/procnet"
)

// ByzantinePackage is the test-only program that plays a compromised authority.
const ByzantinePackage = "github.com/medledger/medledger/testnet/procnet/byzantine"

var byzantineProgram = &program{pkg: ByzantinePackage, name: "byzantine"}

// ByzantineBinary returns the compromised-authority program, built once per test binary.
func ByzantineBinary(tb testing.TB) string { return byzantineProgram.binary(tb) }

// Byzantine is a running compromised authority: the program testnet/procnet/byzantine started
// with node i's home (its authority key and libp2p identity) in place of node i. Commands and
// their one-line JSON replies are described in that program's doc comment.
type Byzantine struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	err   error // exit status, valid after done

	mu sync.Mutex // one command at a time
	// Peer is the libp2p peer id it joined under; LogPath collects its standard error.
	Peer, LogPath string
}

// StartByzantine starts the compromised authority in node i's home, following the height and
// round through node follow's API as well as gossip, and waits until it reports ready. Node i
// must not be running. It is stopped when the test ends.
func StartByzantine(tb testing.TB, nw *procnet.Network, i, follow int) *Byzantine {
	tb.Helper()
	bin := ByzantineBinary(tb)
	addr, err := nw.APIAddr(follow)
	if err != nil {
		tb.Fatal(err)
	}
	b := &Byzantine{LogPath: filepath.Join(nw.Dir, "byzantine"+strconv.Itoa(i)+".log"), lines: make(chan string, 16), done: make(chan struct{})}
	logf, err := os.OpenFile(b.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close() // the child holds its own descriptor
	b.cmd = exec.Command(bin, "--home", nw.Home(i), "--api", addr, "--api-token-file", filepath.Join(nw.Home(follow), "api.token"))
	b.cmd.Stderr = logf
	b.cmd.SysProcAttr = procnet.ChildProcAttr()
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
		close(b.lines)
	}()
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	tb.Cleanup(func() {
		b.Close()
		if tb.Failed() {
			tb.Logf("---- byzantine log tail (%s) ----\n%s", b.LogPath, tail(b.LogPath, 4000))
		}
	})
	var ready struct {
		Event string `json:"event"`
		Peer  string `json:"peer"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.read(ctx, &ready); err != nil || ready.Event != "ready" {
		tb.Fatalf("byzantine program did not start (%v, %+v); log:\n%s", err, ready, tail(b.LogPath, 4000))
	}
	b.Peer = ready.Peer
	return b
}

// Do sends one command and decodes its reply into out (if not nil). A reply {"error": ...} is
// returned as an error.
func (b *Byzantine) Do(ctx context.Context, command string, out any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := io.WriteString(b.stdin, command+"\n"); err != nil {
		return fmt.Errorf("byzantine: %s: %w", command, err)
	}
	var raw json.RawMessage
	if err := b.read(ctx, &raw); err != nil {
		return fmt.Errorf("byzantine: %s: %w", command, err)
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return fmt.Errorf("byzantine: %s: %s", command, e.Error)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func (b *Byzantine) read(ctx context.Context, out any) error {
	select {
	case line, ok := <-b.lines:
		if !ok {
			<-b.done
			return fmt.Errorf("the program exited (%v)", b.err)
		}
		return json.Unmarshal([]byte(line), out)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PID is the program's process id while it runs, else 0.
func (b *Byzantine) PID() int {
	select {
	case <-b.done:
		return 0
	default:
		return b.cmd.Process.Pid
	}
}

// Close asks the program to quit (it closes its host) and kills it if it has not exited within
// five seconds. It is safe to call more than once.
func (b *Byzantine) Close() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.stdin.Close()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
}

// Exited reports whether the program has exited, and how.
func (b *Byzantine) Exited() (error, bool) {
	select {
	case <-b.done:
		if b.err == nil {
			return errors.New("exited with status 0"), true
		}
		return b.err, true
	default:
		return nil, false
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}
