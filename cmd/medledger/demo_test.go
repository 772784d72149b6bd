package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medledger/medledger/testnet/procnet/procnettest"
	"github.com/medledger/medledger/testnet/synth"
)

func TestMain(m *testing.M) {
	code := m.Run()
	procnettest.Cleanup()
	os.Exit(code)
}

// TestDemoLeavesNoPHI runs `medledger demo` as a user would — four node processes, the record
// story with the demo's synthetic patients, a short load, a clean stop — and then searches
// everything it left behind (every file of the network directory: Badger tables and value logs,
// blob store, access journals, wallets, keys, config, node logs) and everything it printed for
// the names, birth dates, addresses, phone numbers, record numbers, FHIR ids and notes of those
// patients, as written, in other letter case, JSON-escaped and hex-encoded. Only ciphertext may
// carry them.
func TestDemoLeavesNoPHI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo's multi-process network: skipped with -short")
	}
	const nRecords = 12
	bin := procnettest.Binary(t)
	root := t.TempDir()
	netDir := filepath.Join(root, "net")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "demo", "--dir", netDir, "--duration", "60s", "--records", "12")
	cmd.Stdout, cmd.Stderr = &out, &out
	// On timeout, stop the demo the way Ctrl-C does, so that it stops its nodes; kill it only if
	// it does not exit after that.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	output := out.Bytes()
	t.Logf("demo ran %s", elapsed.Round(time.Second))
	if err != nil || ctx.Err() != nil {
		t.Fatalf("demo: %v (context: %v)\n%s", err, ctx.Err(), output)
	}

	// The story ran to its end, the audit trail shows the refused and the served read, and the
	// demo stopped its nodes and kept the network.
	text := string(output)
	for _, want := range []string{
		"6. The specialist asks again: served.",
		"7. Patient 1's audit trail on the ledger",
		"Patients 2 and 3 enrol as a family",
		"The practice files the same claim again: refused (HTTP 409, the duplicate rule",
		"the member-care rule",
		"disputes it, signed with the patient's own key",
		"the payer's node process stopped cleanly",
		"all 4 node processes stopped cleanly",
		"network kept in " + netDir,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	for _, outcome := range []string{"refused", "served"} {
		row := regexp.MustCompile(`(?m)^\s+node2 \(the specialist\)\s+clinician\s+\S+\s+\d+\s+.*\s` + outcome + `\b`)
		if !row.MatchString(text) {
			t.Errorf("the demo's audit trail has no %s access by a clinician at the specialist", outcome)
		}
	}
	if strings.Contains(text, "interrupted during the story") {
		t.Errorf("the demo's --duration ended before the story did")
	}
	if t.Failed() {
		t.Fatalf("demo output:\n%s", output)
	}
	// The story's lines, and how long the load ran after it (the last status table's clock):
	// the story must fit in --duration with room to spare.
	story, _, _ := strings.Cut(text, "Load:")
	t.Logf("the demo's story:\n%s", story)
	if m := regexp.MustCompile(`(?m)^\[(\w+)\]`).FindAllStringSubmatch(text, -1); len(m) > 0 {
		t.Logf("the load ran %s after the story (%d status tables)", m[len(m)-1][1], len(m))
	}

	// The markers of exactly the demo's people.
	people, rnd := storyPeople(storyPatients)
	var markers []string
	who := map[string]int{}
	for k, p := range people {
		for _, m := range p.Marker() {
			markers = append(markers, m)
			who[m] = k + 1
		}
	}

	// Control: the Bundle the demo imported for patient 1, regenerated, holds their markers in a
	// form the scanner finds; so would a node that stored it in clear.
	p1 := people[0]
	found := map[string]bool{}
	for _, h := range synth.ScanBytes(p1.Bundle(rnd, nRecords), p1.Marker()) {
		found[h.Marker] = true
	}
	for _, m := range p1.Marker() {
		if !found[m] && m != p1.Given+" "+p1.Family { // the Bundle holds the names apart
			t.Errorf("control: patient 1's marker %q is not found in their own Bundle", m)
		}
	}

	// Scan the network directory and the demo's output, as a file and as bytes.
	outFile := filepath.Join(root, "demo-output.txt")
	if err := os.WriteFile(outFile, output, 0o600); err != nil {
		t.Fatal(err)
	}
	hits, st, err := synth.ScanDir(root, markers)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned %d files, %d bytes, for %d forms of %d markers of %d patients: %v",
		st.Files, st.Bytes, len(synth.Needles(markers)), len(markers), len(people), st.Kinds)
	for _, kind := range []string{"badger", "blob", "log", "billing"} {
		if st.Kinds[kind] == 0 {
			t.Errorf("control: no %s files among those scanned: is the scan looking in the right place?", kind)
		}
	}
	logs := 0
	for i := range 4 {
		if fi, err := os.Stat(filepath.Join(netDir, fmt.Sprintf("node%d.log", i))); err == nil && fi.Size() > 0 {
			logs++
		}
	}
	if logs != 4 {
		t.Errorf("control: %d of 4 node logs exist and are not empty", logs)
	}
	for _, h := range hits {
		rel, _ := filepath.Rel(root, h.File)
		t.Errorf("PHI in clear: %s at offset %d holds patient %d's marker %q (as %s)", rel, h.Offset, who[h.Marker], h.Marker, h.Form)
	}
	for _, h := range synth.ScanBytes(output, markers) {
		t.Errorf("PHI in the demo's output: offset %d holds patient %d's marker %q (as %s)", h.Offset, who[h.Marker], h.Marker, h.Form)
	}
}
