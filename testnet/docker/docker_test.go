package docker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/testnet"
)

const (
	authorities = 4
	fullNodes   = 2
	total       = authorities + fullNodes
	basePort    = 26600
	// stepTimeout bounds every wait on a condition; the whole test is bounded by go test's
	// -timeout (the Makefile gives 20 minutes).
	stepTimeout = 3 * time.Minute
)

// cluster is a compose project of the testnet's containers.
type cluster struct {
	t       *testing.T
	dir     string // the testnet directory, mounted at /testnet
	project string
	image   string
	ips     []string
	network string
}

// run runs a command on the host, bounded, and returns its output; a failure fails the test.
func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := try(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// try runs a command on the host, bounded, and returns its stdout (and stderr on failure).
func try(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0") // the legacy builder pulls nothing for FROM scratch
	if err := cmd.Run(); err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

func (c *cluster) container(i int) string { return fmt.Sprintf("%s_node%d_1", c.project, i) }

func (c *cluster) compose(args ...string) string {
	c.t.Helper()
	return run(c.t, 3*time.Minute, "docker-compose", append([]string{"-p", c.project, "-f", filepath.Join(c.dir, testnet.ComposeFile)}, args...)...)
}

// medledger runs the binary's own command in node i's container (docker exec) and returns its
// output.
func (c *cluster) medledger(i int, args ...string) (string, error) {
	return try(2*time.Minute, "docker", append([]string{"exec", c.container(i), "/medledger"}, args...)...)
}

// medledgerJSON runs a command with --json in node i's container and decodes its answer.
func (c *cluster) medledgerJSON(i int, v any, args ...string) {
	c.t.Helper()
	out, err := c.medledger(i, append(args, "--json")...)
	if err != nil {
		c.t.Fatalf("node%d: medledger %s: %v\n%s", i, strings.Join(args, " "), err, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("node%d: medledger %s printed %q: %v", i, strings.Join(args, " "), out, err)
	}
}

// pid is the host pid of node i's container process (its network namespace's holder).
func (c *cluster) pid(i int) (string, error) {
	out, err := try(30*time.Second, "docker", "inspect", "-f", "{{.State.Pid}}", c.container(i))
	pid := strings.TrimSpace(out)
	if err == nil && (pid == "" || pid == "0") {
		err = fmt.Errorf("node%d is not running", i)
	}
	return pid, err
}

// get asks node i's API for path from inside its container's network namespace (the API
// listens on the container's loopback address only), with the operator token when auth.
func (c *cluster) get(i int, path string, auth bool) (string, error) {
	pid, err := c.pid(i)
	if err != nil {
		return "", err
	}
	_, api := testnet.Ports(basePort, i)
	args := []string{"-t", pid, "-n", "curl", "-sS", "-f", "-m", "5"}
	if auth {
		tok, err := os.ReadFile(filepath.Join(testnet.NodeDir(c.dir, i), "api.token"))
		if err != nil {
			return "", err
		}
		args = append(args, "-H", "Authorization: Bearer "+strings.TrimSpace(string(tok)))
	}
	return try(10*time.Second, "nsenter", append(args, fmt.Sprintf("http://127.0.0.1:%d%s", api, path))...)
}

type status struct {
	Height        uint64 `json:"height"`
	LastBlockHash string `json:"last_block_hash"`
	ProviderID    string `json:"provider_id"`
}

func (c *cluster) status(i int) (status, error) {
	var st status
	out, err := c.get(i, "/v1/status", true)
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	return st, err
}

// blockHash is the hash of node i's block at height h.
func (c *cluster) blockHash(i int, h uint64) (string, error) {
	out, err := c.get(i, "/v1/blocks/"+strconv.FormatUint(h, 10), true)
	if err != nil {
		return "", err
	}
	var b struct {
		Hash string `json:"hash"`
	}
	err = json.Unmarshal([]byte(out), &b)
	return b.Hash, err
}

// waitFor polls cond every half second until it holds or stepTimeout passes.
func (c *cluster) waitFor(what string, cond func() (bool, error)) {
	c.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %s (last error: %v)", what, stepTimeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitGrowth waits until every node in nodes has committed at least by blocks past the
// highest height any of them has now.
func (c *cluster) waitGrowth(what string, nodes []int, by uint64) uint64 {
	c.t.Helper()
	var from uint64
	for _, i := range nodes {
		if st, err := c.status(i); err == nil {
			from = max(from, st.Height)
		}
	}
	c.waitFor(what, func() (bool, error) {
		for _, i := range nodes {
			st, err := c.status(i)
			if err != nil || st.Height < from+by {
				return false, err
			}
		}
		return true, nil
	})
	return from + by
}

// metric is the value of one exact sample line in node i's /metrics (fetched without a token).
func (c *cluster) metric(i int, sample string) (float64, error) {
	out, err := c.get(i, "/metrics", false)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("node%d: no %s in /metrics", i, sample)
}

// iptables runs iptables in node i's network namespace (the scratch image has none).
func (c *cluster) iptables(i int, args ...string) {
	c.t.Helper()
	pid, err := c.pid(i)
	if err != nil {
		c.t.Fatal(err)
	}
	run(c.t, 30*time.Second, "nsenter", append([]string{"-t", pid, "-n", "iptables"}, args...)...)
}

func all() []int {
	out := make([]int, total)
	for i := range out {
		out[i] = i
	}
	return out
}

func without(skip ...int) []int {
	var out []int
	for _, i := range all() {
		if !slices.Contains(skip, i) {
			out = append(out, i)
		}
	}
	return out
}

// TestDockerTestnet: the docker testnet end to end (see the package comment).
func TestDockerTestnet(t *testing.T) {
	if os.Getenv("MEDLEDGER_DOCKER") != "1" {
		t.Skip("the docker testnet runs with MEDLEDGER_DOCKER=1 (make testnet-docker)")
	}
	for _, tool := range []string{"docker", "docker-compose", "nsenter", "iptables", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the docker testnet needs %s: %v", tool, err)
		}
	}
	began := time.Now()
	idb := make([]byte, 4)
	if _, err := rand.Read(idb); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(idb)
	octet, err := rand.Int(rand.Reader, big.NewInt(200))
	if err != nil {
		t.Fatal(err)
	}
	// A /24 in 10.213.0.0/16 picked at random, so that two runs on one machine rarely collide.
	start := fmt.Sprintf("10.213.%d.10", 20+octet.Int64())
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "net"), project: "mltn" + id, image: "medledger-testnet:" + id}
	c.network = c.project + "_medledger"

	// The static binary, then the testnet homes and docker files written by that binary.
	bin := filepath.Join(t.TempDir(), "medledger")
	t.Logf("building a static binary (CGO_ENABLED=0)")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "../../cmd/medledger")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run(t, time.Minute, bin, "testnet", "init", "--authorities", strconv.Itoa(authorities), "--full-nodes", strconv.Itoa(fullNodes),
		"--dir", c.dir, "--base-port", strconv.Itoa(basePort), "--starting-ip", start, "--docker", "--image", c.image,
		"--docker-user", fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()))
	for i := range total {
		ip, err := testnet.Options{StartingIP: start}.Host(i)
		if err != nil {
			t.Fatal(err)
		}
		c.ips = append(c.ips, ip)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, testnet.ImageBinary), data, 0o755); err != nil {
		t.Fatal(err)
	}

	// Whatever happens, the containers, the network and the image go.
	t.Cleanup(func() {
		if t.Failed() {
			for i := range total {
				out, _ := try(30*time.Second, "docker", "logs", "--tail", "40", c.container(i))
				t.Logf("---- node%d's last lines ----\n%s", i, out)
			}
		}
		for i := range total { // a paused container would hold compose's stop up
			_, _ = try(30*time.Second, "docker", "unpause", c.container(i))
		}
		if out, err := try(3*time.Minute, "docker-compose", "-p", c.project, "-f", filepath.Join(c.dir, testnet.ComposeFile), "down", "-v", "-t", "5", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
		if out, err := try(time.Minute, "docker", "rmi", "-f", c.image); err != nil {
			t.Errorf("docker rmi: %v\n%s", err, out)
		}
	})
	run(t, 5*time.Minute, "docker", "build", "-q", "-t", c.image, c.dir)
	c.compose("up", "-d")
	t.Logf("%d containers up on %s (%s/24) after %s", total, c.network, start, time.Since(began).Round(time.Second))

	// Every node ready: synced with member peers (/readyz, no token).
	c.waitFor("every node ready", func() (bool, error) {
		for i := range total {
			out, err := c.get(i, "/readyz", false)
			if err != nil || !strings.Contains(out, `"ready":true`) {
				return false, fmt.Errorf("node%d: %v %s", i, err, out)
			}
		}
		return true, nil
	})
	c.waitGrowth("the chain grows", all(), 2)

	// The record story across containers: the patient enrols at practice node4, which imports a
	// bundle; practice node5 cannot read it, the patient consents, node5 reads it.
	story(t, c)

	// Chaos. Each step ends with the chain growing on the nodes that should be able to.
	var keep []uint64 // heights whose block hashes must survive everything
	stHeight, err := c.status(0)
	if err != nil {
		t.Fatal(err)
	}
	keep = append(keep, stHeight.Height)
	before := map[uint64]string{}
	for _, h := range keep {
		if before[h], err = c.blockHash(0, h); err != nil {
			t.Fatal(err)
		}
	}

	t.Logf("chaos: kill node1")
	run(t, time.Minute, "docker", "kill", c.container(1))
	c.waitGrowth("three authorities commit while node1 is dead", without(1), 3)
	run(t, time.Minute, "docker", "start", c.container(1))
	c.waitGrowth("node1 restarts and catches up", all(), 2)

	t.Logf("chaos: pause node2")
	run(t, time.Minute, "docker", "pause", c.container(2))
	c.waitGrowth("three authorities commit while node2 is paused", without(2), 3)
	run(t, time.Minute, "docker", "unpause", c.container(2))
	c.waitGrowth("node2 resumes and catches up", all(), 2)

	t.Logf("chaos: disconnect node3 from the network")
	run(t, time.Minute, "docker", "network", "disconnect", c.network, c.container(3))
	c.waitGrowth("three authorities commit while node3 is cut off", without(3), 3)
	run(t, time.Minute, "docker", "network", "connect", "--ip", c.ips[3], c.network, c.container(3))
	c.waitGrowth("node3 reconnects and catches up", all(), 2)

	// A 2|2 partition of the authorities, each side with one practice: {0,1,4} | {2,3,5}.
	// Neither side has the more than two thirds a block needs: the chain halts on both, and
	// resumes with one history once the partition heals.
	t.Logf("chaos: partition {node0,node1,node4} | {node2,node3,node5}")
	sides := [][]int{{0, 1, 4}, {2, 3, 5}}
	for s, side := range sides {
		for _, i := range side {
			for _, j := range sides[1-s] {
				c.iptables(i, "-A", "INPUT", "-s", c.ips[j], "-j", "DROP")
				c.iptables(i, "-A", "OUTPUT", "-d", c.ips[j], "-j", "DROP")
			}
		}
	}
	halted := map[int]uint64{}
	c.waitFor("the partitioned chain halts (no new height for 8 s on any node)", func() (bool, error) {
		heights := map[int]uint64{}
		for i := range total {
			st, err := c.status(i)
			if err != nil {
				return false, err
			}
			heights[i] = st.Height
		}
		time.Sleep(8 * time.Second)
		for i := range total {
			st, err := c.status(i)
			if err != nil || st.Height != heights[i] {
				return false, err
			}
		}
		halted = heights
		return true, nil
	})
	t.Logf("halted at %v", halted)
	for _, side := range sides {
		for _, i := range side {
			c.iptables(i, "-F", "INPUT")
			c.iptables(i, "-F", "OUTPUT")
		}
	}
	var top uint64
	for _, h := range halted {
		top = max(top, h)
	}
	c.waitGrowth("the healed network commits again", all(), 3)

	// Every node on the same head: the same hash at a common height, and the blocks kept from
	// before the chaos unchanged everywhere.
	agreed := c.waitGrowth("every node past the halt", all(), 1)
	c.waitFor("every node agrees on the block at the common height", func() (bool, error) {
		var want string
		for i := range total {
			h, err := c.blockHash(i, agreed)
			if err != nil {
				return false, err
			}
			if want == "" {
				want = h
			} else if h != want {
				return false, fmt.Errorf("node%d has %s at height %d, node0 %s", i, h, agreed, want)
			}
		}
		return true, nil
	})
	for i := range total {
		for _, h := range append(keep, top) {
			got, err := c.blockHash(i, h)
			if err != nil {
				t.Fatalf("node%d: block %d: %v", i, h, err)
			}
			if want, ok := before[h]; ok && got != want {
				t.Fatalf("node%d: block %d is %s, was %s before the chaos", i, h, got, want)
			}
		}
	}
	// The record is still readable where it was shared.
	recheck(t, c)
	t.Logf("FIGURE docker testnet: %d containers, record story and chaos (kill, pause, disconnect, 2|2 partition) passed; all agree at height %d; %s in all",
		total, agreed, time.Since(began).Round(time.Second))
}
