package procnet_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// ScreenshotsEnv names the directory the browser test keeps its screenshots in (default: the
// test's temporary directory, deleted afterwards).
const ScreenshotsEnv = "MEDLEDGER_SCREENSHOTS"

// browser starts a headless Chromium for the test. A machine without one fails the test with
// how to install it: the web pages are part of what `make test` checks.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no Chromium to drive the web pages with: install Debian's package (as root: apt-get install -y chromium; .ci/run does it), or run with -short to skip the multi-process tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1200, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The browser starts with the first action and lives as long as that action's context: so it
	// starts here, on the tab's own context, not on a step's shorter one.
	require.NoError(t, chromedp.Do(ctx), "starting %s", path)
	return ctx
}

// page is one browser tab under test, with where its screenshots go.
type page struct {
	t     *testing.T
	ctx   context.Context
	shots string
	n     *int // shared by the test's pages, so the files sort in the story's order
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		// What the page showed says more than the step's timeout.
		sctx, scancel := context.WithTimeout(p.ctx, 10*time.Second)
		defer scancel()
		loc, _ := chromedp.Run(sctx, chromedp.Location())
		body, _ := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("body")))
		p.shot("failed")
		p.t.Fatalf("browser step failed at %s: %v; the page shows:\n%s", loc, err, body)
	}
}

// text is the visible text of the page's main landmark.
func (p *page) text() string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(p.t, err)
	return s
}

// waitText reloads url until the page shows every one of want (the ledger and the other node
// catch up in their own time). A step that fails while the page loads is a retry, not a failure.
func (p *page) waitText(url string, want ...string) string {
	p.t.Helper()
	var last string
	deadline := time.Now().Add(stepTimeout)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("footer")))
		if err == nil {
			var s string
			if s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body"))); err == nil {
				last = s
			}
		}
		cancel()
		missing := err != nil
		for _, w := range want {
			if !strings.Contains(last, w) {
				missing = true
			}
		}
		if !missing {
			return last
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s never showed %q (last error %v); last:\n%s", url, want, err, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (p *page) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(p.t, err)
	*p.n++
	require.NoError(p.t, os.WriteFile(filepath.Join(p.shots, fmt.Sprintf("%02d-%s.png", *p.n, name)), png, 0o644))
}

// href is the address of the first link whose text starts with prefix.
func (p *page) href(prefix string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	h, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(Array.from(document.querySelectorAll("main a")).find(a => a.textContent.trim().startsWith(%q)) || {href: ""}).href`, prefix)))
	require.NoError(p.t, err)
	require.NotEmpty(p.t, h, "no link starting %q on the page:\n%s", prefix, p.text())
	return h
}

func (p *page) signIn(base, name, password string) {
	p.t.Helper()
	p.do(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.SendKeys(chromedp.ID("name"), name), chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("whoami")))
	require.Contains(p.t, p.text(), "Signed in as "+name)
}

func addUser(t *testing.T, home, name, role, password string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name+".pass")
	require.NoError(t, os.WriteFile(f, []byte(password+"\n"), 0o600))
	_, errs, code := cli(t, "users", "add", "--home", home, "--name", name, "--role", role, "--password-file", f)
	require.Equal(t, 0, code, errs)
}

// TestWebUIStory drives the practice's pages and the patient's page in Chromium against node
// processes: a clinician at practice A finds the patient by name, imports a file and reads the
// records; a clinician at practice B, which knows no name, breaks the glass with a reason and
// sees the audit; the patient grants consent, sees the reads in the verified audit and reads a
// record on the wallet's page.
func TestWebUIStory(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network and a browser: skipped with -short")
	}
	ctx := browser(t)
	shots := os.Getenv(ScreenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))
	t.Logf("screenshots in %s", shots)
	start := time.Now()

	r := startRecordNet(t)
	home0, home2 := r.nw.Home(0), r.nw.Home(2)
	t.Logf("network up in %s", time.Since(start).Round(time.Millisecond))

	// The patient's wallet, registered at practice A by its front desk (as in TestCLIStory).
	wallet := filepath.Join(t.TempDir(), "maria")
	pass := filepath.Join(t.TempDir(), "maria.pass")
	require.NoError(t, os.WriteFile(pass, []byte("maria's long passphrase\n"), 0o600))
	var created struct {
		PatientID string `json:"patient"`
	}
	cliJSON(t, &created, "wallet", "new", "--dir", wallet, "--passphrase-file", pass)
	addUser(t, home0, "desk", "front-desk", "front desk password, long")
	deskPass := filepath.Join(t.TempDir(), "desk.pass")
	require.NoError(t, os.WriteFile(deskPass, []byte("front desk password, long\n"), 0o600))
	out, errs, code := cli(t, "login", "--home", home0, "--name", "desk", "--password-file", deskPass)
	require.Equal(t, 0, code, errs)
	session := filepath.Join(t.TempDir(), "desk.session")
	require.NoError(t, os.WriteFile(session, []byte(out), 0o600))
	var reg struct {
		PatientID string `json:"patient_id"`
	}
	cliJSON(t, &reg, "wallet", "register", "--dir", wallet, "--passphrase-file", pass, "--home", home0, "--session-file", session)
	patientID := reg.PatientID
	// The first visit was imported from the practice's EHR: the directory learns the name.
	var imported struct {
		Records []struct{ ID, ResourceType string } `json:"records"`
	}
	cliJSON(t, &imported, "records", "import", "--home", home0, "--patient", patientID, "testdata/webui-visit1.json")
	require.Len(t, imported.Records, 3)

	// Practice A: a clinician signs in, finds the patient by name, imports the second visit.
	addUser(t, home0, "grey", "clinician", "clinician password, long")
	addr0, err := r.nw.APIAddr(0)
	require.NoError(t, err)
	base0 := "http://" + addr0
	var shotN int
	a := &page{t: t, ctx: ctx, shots: shots, n: &shotN}
	a.signIn(base0, "grey", "clinician password, long")
	a.shot("practice-signed-in")
	a.do(chromedp.Navigate(base0+"/ui/patients"), chromedp.SendKeys(chromedp.ID("q"), "lopez"), chromedp.Click(chromedp.ID("find")),
		chromedp.WaitVisible(chromedp.ID("results-h")))
	txt := a.text()
	require.Contains(t, txt, "Maria Elena Lopez")
	require.Contains(t, txt, "1968-04-12")
	require.Contains(t, txt, "MRN-40411")
	a.shot("practice-find")
	a.do(chromedp.Navigate(a.href("Maria Elena Lopez")), chromedp.WaitVisible(chromedp.ID("records-h")))
	require.Contains(t, a.text(), "Problems")
	visit2, err := filepath.Abs("testdata/webui-visit2.json")
	require.NoError(t, err)
	a.do(chromedp.SetUploadFiles(chromedp.ID("file"), []string{visit2}), chromedp.Click(chromedp.ID("import-go")),
		chromedp.WaitVisible(chromedp.CSS("p.flash")))
	txt = a.text()
	require.Contains(t, txt, "The file was imported")
	// The progress the API streamed, as the page's script last showed it.
	require.Regexp(t, `Imported: 5 records \(Written to the ledger: \d+ of \d+\)`, txt)
	for _, want := range []string{"Problems", "Medications", "Observations and results", "Encounters", "Documents", "MedicationRequest", "DocumentReference"} {
		require.Contains(t, txt, want)
	}
	a.shot("practice-imported")
	patientURL := base0 + "/ui/patients/" + patientID
	a.do(chromedp.Navigate(a.href("Observation")), chromedp.WaitVisible(chromedp.ID("record-fields")))
	txt = a.text()
	require.Contains(t, txt, "Systolic blood pressure")
	require.Regexp(t, regexp.MustCompile(`(148|136) mmHg`), txt)
	a.shot("practice-observation")
	a.do(chromedp.Navigate(patientURL), chromedp.WaitVisible(chromedp.ID("records-h")))
	a.do(chromedp.Navigate(a.href("MedicationRequest")), chromedp.WaitVisible(chromedp.ID("record-fields")))
	require.Contains(t, a.text(), "Amlodipine 5 MG Oral Tablet")
	require.Contains(t, a.text(), "One tablet by mouth once daily")
	// The second visit's Patient is a new version of the first's: the record shows its history.
	a.do(chromedp.Navigate(patientURL), chromedp.WaitVisible(chromedp.ID("records-h")))
	a.do(chromedp.Navigate(a.href("Patient")), chromedp.WaitVisible(chromedp.ID("hist-h")))
	txt = a.text()
	require.Regexp(t, `(?s)version 1.*version 2`, txt)
	require.Contains(t, txt, "(this one)")
	a.shot("practice-history")
	st2 := r.status(2)
	txt = a.waitText(patientURL+"/consents", "Asking the patient for consent")
	require.Contains(t, txt, "medledger wallet grant --dir YOUR_WALLET --to "+r.prov[0].String())
	a.shot("practice-consents")

	// Practice B knows no name: the ledger has none. It breaks the glass with a reason.
	addUser(t, home2, "house", "clinician", "another clinician password")
	addr2, err := r.nw.APIAddr(2)
	require.NoError(t, err)
	base2 := "http://" + addr2
	b := &page{t: t, ctx: ctx, shots: shots, n: &shotN}
	b.signIn(base2, "house", "another clinician password")
	b.do(chromedp.Navigate(base2+"/ui/patients?q=lopez"), chromedp.WaitVisible(chromedp.ID("results-h")))
	require.Contains(t, b.text(), "No patient in this practice's directory matches")
	b.do(chromedp.Navigate(base2+"/ui/patients?q="+patientID), chromedp.WaitVisible(chromedp.ID("q")))
	b.do(chromedp.Navigate(b.href("Open the patient")))
	pageB := base2 + "/ui/patients/" + patientID
	txt = b.waitText(pageB, "Condition", "MedicationRequest")
	require.NotContains(t, txt, "Lopez")
	require.Contains(t, txt, "name not in this practice's directory")
	cond := b.href("Condition")
	b.do(chromedp.Navigate(cond), chromedp.WaitVisible(chromedp.ID("error")))
	require.Contains(t, b.text(), "consent")
	b.shot("other-practice-refused")
	b.do(chromedp.Navigate(pageB+"/emergency"), chromedp.WaitVisible(chromedp.ID("break-glass")),
		chromedp.Click(chromedp.ID("reason-unable-to-consent")),
		chromedp.SendKeys(chromedp.ID("reason"), "Brought in unconscious after a fall; needs her medication list."))
	b.shot("other-practice-emergency-form")
	b.do(chromedp.Click(chromedp.ID("break-glass")), chromedp.WaitVisible(chromedp.CSS("p.flash")))
	require.Contains(t, b.text(), "Emergency access is open")
	emergencyURL := cond + "&emergency=true"
	txt = b.waitText(emergencyURL, "Hypertensive disorder")
	require.Contains(t, txt, "Read under emergency access")
	b.shot("other-practice-emergency-read")
	txt = b.waitText(pageB+"/audit", "clinician", "emergency", "(this practice)")
	require.Contains(t, txt, "unable-to-consent")
	b.shot("other-practice-audit")
	b.do(chromedp.Navigate(base2+"/ui/status"), chromedp.WaitVisible(chromedp.ID("height")))
	txt = b.text()
	require.Contains(t, txt, "Authorities")
	require.Regexp(t, `Sync\s+(caught up|syncing: block)`, txt)
	require.Contains(t, txt, st2.ChainID)
	b.shot("other-practice-status")
	b.do(chromedp.Click(chromedp.CSS(".logout button")), chromedp.WaitVisible(chromedp.ID("signin")))
	b.do(chromedp.Navigate(pageB))
	require.Contains(t, b.text(), "Staff sign-in", "signed out: the patient's page needs signing in again")

	// The patient's page, served by the wallet; the passphrase is given once, at start.
	wctx, stopWallet := context.WithCancel(context.Background())
	defer stopWallet()
	wcmd := exec.CommandContext(wctx, procnettest.Binary(t), "wallet", "ui", "--dir", wallet, "--passphrase-file", pass, "--home", home0, "--listen", "127.0.0.1:0")
	wcmd.Stderr = os.Stderr
	stdout, err := wcmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, wcmd.Start())
	defer func() { stopWallet(); _ = wcmd.Wait() }()
	lines := bufio.NewReader(stdout)
	first, err := lines.ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, lines) }()
	m := regexp.MustCompile(`(http://127\.0\.0\.1:\d+)/\?key=[0-9a-f]+`).FindStringSubmatch(first)
	require.NotNil(t, m, "wallet ui printed %q", first)
	w := &page{t: t, ctx: ctx, shots: shots, n: &shotN}
	w.do(chromedp.Navigate(m[0]), chromedp.WaitVisible(chromedp.ID("verified")))
	txt = w.text()
	require.Contains(t, txt, "EMERGENCY ACCESS by provider "+r.prov[2].String())
	require.NotContains(t, txt, "Withdraw", "no consent given yet (the emergency access cannot be withdrawn)")
	w.shot("wallet-home")
	w.do(chromedp.SendKeys(chromedp.ID("to"), r.prov[2].String()), chromedp.SendKeys(chromedp.ID("types"), "Condition,MedicationRequest"),
		chromedp.Click(chromedp.ID("grant-go")), chromedp.WaitVisible(chromedp.CSS("p.flash")))
	txt = w.text()
	require.Contains(t, txt, "Consent given")
	require.Contains(t, txt, "in force")
	require.Contains(t, txt, "Withdraw")
	// Who read what, verified: practice B's emergency read, by a clinician.
	require.Regexp(t, regexp.MustCompile(`(?s)Who read my records.*`+r.prov[2].String()+`\s+clinician`), txt)
	require.Contains(t, txt, "EMERGENCY READ")
	w.shot("wallet-granted")
	w.do(chromedp.Navigate(w.href("Condition")), chromedp.WaitVisible(chromedp.ID("record-fields")))
	txt = w.text()
	require.Contains(t, txt, "Hypertensive disorder")
	require.Contains(t, txt, "decrypted on this machine")
	w.shot("wallet-record")
	// Withdrawing the consent, by keyboard: the button is reachable and named.
	w.do(chromedp.Navigate(m[1]+"/"), chromedp.WaitVisible(chromedp.ID("verified")),
		chromedp.Focus(chromedp.CSS("#consents form button")), chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("p.flash")))
	txt = w.text()
	require.Contains(t, txt, "Consent withdrawn")
	require.Contains(t, txt, "withdrawn")
	w.shot("wallet-revoked")
	t.Logf("story done in %s; screenshots in %s", time.Since(start).Round(time.Millisecond), shots)
}
