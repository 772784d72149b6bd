package node_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape fetches path without a token and returns its status and body.
func scrape(t *testing.T, r *runningNode, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + r.n.APIAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// series returns the value of the sample named exactly name (with its labels, as printed).
func series(t *testing.T, body []byte, name string) (float64, bool) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// TestOpsEndpoints: /metrics, /healthz and /readyz answer without a token; the height series
// grows with the chain, record requests are counted by operation and outcome, libp2p's own
// series are in the same registry, and no answer carries what an import contained.
func TestOpsEndpoints(t *testing.T) {
	home := soloHome(t)
	r := start(t, home)
	defer r.shutdown(t)
	r.waitHeight(t, 1)

	code, body := scrape(t, r, "/healthz")
	if code != http.StatusOK || !strings.Contains(string(body), `"ok":true`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, body = scrape(t, r, "/readyz")
	var rd struct {
		Ready  bool   `json:"ready"`
		Height uint64 `json:"height"`
	}
	if err := json.Unmarshal(body, &rd); err != nil || code != http.StatusOK || !rd.Ready || rd.Height < 1 {
		t.Fatalf("/readyz: %d %s (%v)", code, body, err)
	}
	// The token still guards everything else.
	if code, _ := scrape(t, r, "/v1/status"); code != http.StatusUnauthorized {
		t.Fatalf("/v1/status without a token: %d", code)
	}
	if code, _ := scrape(t, r, "/metricsx"); code != http.StatusUnauthorized {
		t.Fatalf("/metricsx without a token: %d", code)
	}

	code, first := scrape(t, r, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, first)
	}
	h1, ok := series(t, first, "medledger_height")
	if !ok || h1 < 1 {
		t.Fatalf("medledger_height %v %v in\n%s", h1, ok, first)
	}
	for _, name := range []string{
		`medledger_record_requests_total{op="import",outcome="invalid"}`,
		`medledger_mempool_txs`, `medledger_mempool_bytes`, `medledger_consensus_round`, `medledger_sync_target_height`,
		`medledger_peers{class="member"}`, `medledger_replication_backlog_records`, `medledger_blocks_committed_total`,
	} {
		if _, ok := series(t, first, name); !ok {
			t.Errorf("no series %s", name)
		}
	}
	for _, want := range []string{"medledger_block_interval_seconds_bucket", "medledger_consensus_commit_round_bucket", `medledger_gossip_validations_total{topic=`, "libp2p_", "go_goroutines"} {
		if !strings.Contains(string(first), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	importsBefore, _ := series(t, first, `medledger_record_requests_total{op="import",outcome="invalid"}`)
	readsBefore, _ := series(t, first, `medledger_record_requests_total{op="read",outcome="invalid"}`)

	// An import for a patient the ledger does not know is refused, and counted.
	bundle, err := os.ReadFile("fhir/testdata/bundle-collection.json")
	if err != nil {
		t.Fatal(err)
	}
	patient := strings.Repeat("ab", 20)
	req, _ := http.NewRequest("POST", "http://"+r.n.APIAddr()+"/v1/patients/"+patient+"/records", bytes.NewReader(bundle))
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 4 {
		t.Fatalf("import for an unknown patient: %d, want a 4xx", resp.StatusCode)
	}
	var unknown map[string]any
	if code := r.get(t, "/v1/records/"+strings.Repeat("cd", 32), &unknown); code/100 != 4 {
		t.Fatalf("read of an unknown record: %d", code)
	}

	deadline := time.Now().Add(30 * time.Second)
	var later []byte
	for {
		_, later = scrape(t, r, "/metrics")
		if h2, _ := series(t, later, "medledger_height"); h2 > h1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("medledger_height stayed at %v for 30 s", h1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v, _ := series(t, later, `medledger_record_requests_total{op="import",outcome="invalid"}`); v != importsBefore+1 {
		t.Fatalf("refused imports %v, want %v", v, importsBefore+1)
	}
	if v, _ := series(t, later, `medledger_record_requests_total{op="read",outcome="invalid"}`); v != readsBefore+1 {
		t.Fatalf("reads of an unknown record %v, want %v", v, readsBefore+1)
	}
	if v, _ := series(t, later, "medledger_blocks_committed_total"); v < 1 {
		t.Fatalf("medledger_blocks_committed_total %v", v)
	}
	// Nothing of the import's content nor the patient id in any answer.
	for _, b := range [][]byte{later, body} {
		for _, phi := range []string{patient, "Condition", "Patient/"} {
			if bytes.Contains(b, []byte(phi)) {
				t.Fatalf("an ops answer contains %q", phi)
			}
		}
	}
}
