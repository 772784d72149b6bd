package docker_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medledger/medledger/testnet"
)

// shared is what the record story leaves for the checks after the chaos.
var shared struct {
	condition string
}

const (
	practice   = 4 // the practice that enrols the patient and imports
	specialist = 5 // the practice the patient consents to
	walletDir  = "alice"
	passFile   = "alice.pass"
	bundleFile = "bundle.json"
)

// story: the patient's wallet (in node4's container) enrols at node4, node4 imports a bundle,
// node5 is refused for want of consent, the patient consents to node5, node5 reads the record;
// the /metrics of both count the import and the reads.
func story(t *testing.T, c *cluster) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, passFile), []byte("alice's long passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile("../../node/fhir/testdata/bundle-collection.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, bundleFile), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	w, pass := testnet.ContainerPath(walletDir), testnet.ContainerPath(passFile)
	home4, home5 := testnet.ContainerHome(practice), testnet.ContainerHome(specialist)

	var created struct {
		Patient string `json:"patient"`
	}
	c.medledgerJSON(practice, &created, "wallet", "new", "--dir", w, "--passphrase-file", pass)
	var reg struct {
		PatientID string `json:"patient_id"`
	}
	c.medledgerJSON(practice, &reg, "wallet", "register", "--dir", w, "--passphrase-file", pass, "--home", home4)
	if reg.PatientID != created.Patient || len(reg.PatientID) != 40 {
		t.Fatalf("registered %q, created %q", reg.PatientID, created.Patient)
	}
	var imported struct {
		Records []struct {
			ID           string `json:"id"`
			ResourceType string `json:"resourceType"`
		} `json:"records"`
	}
	c.medledgerJSON(practice, &imported, "records", "import", "--home", home4, "--patient", reg.PatientID, testnet.ContainerPath(bundleFile))
	for _, r := range imported.Records {
		if r.ResourceType == "Condition" {
			shared.condition = r.ID
		}
	}
	if shared.condition == "" {
		t.Fatalf("no Condition among the imported records %+v", imported.Records)
	}
	t.Logf("story: patient %s enrolled at node%d, %d records imported", reg.PatientID[:8], practice, len(imported.Records))

	// node5 knows the record once the anchors' block reaches it, and is refused without consent.
	c.waitFor("node5 refused for want of consent", func() (bool, error) {
		out, err := c.medledger(specialist, "records", "get", "--home", home5, shared.condition)
		return err != nil && strings.Contains(out, "no consent"), fmt.Errorf("%v: %s", err, out)
	})
	var st struct {
		ProviderID string `json:"provider_id"`
	}
	out, err := c.medledger(specialist, "status", "--home", home5)
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.ProviderID == "" {
		t.Fatalf("node5 status: %v %s", err, out)
	}
	var grant struct {
		ConsentID string `json:"consent_id"`
	}
	c.medledgerJSON(practice, &grant, "wallet", "grant", "--dir", w, "--passphrase-file", pass, "--home", home4,
		"--to", st.ProviderID, "--types", "Condition", "--expires", "30d")
	t.Logf("story: consent %s to node%d", grant.ConsentID[:8], specialist)
	readAt(t, c, "node5 reads the record after the consent")

	// The metrics of both practices moved (scraped without a token).
	c.waitFor("node4 counts its import, node5 its refused and served reads", func() (bool, error) {
		imp, err := c.metric(practice, `medledger_record_requests_total{op="import",outcome="ok"}`)
		if err != nil || imp < 1 {
			return false, err
		}
		ok, err := c.metric(specialist, `medledger_record_requests_total{op="read",outcome="ok"}`)
		if err != nil || ok < 1 {
			return false, err
		}
		refused, err := c.metric(specialist, `medledger_record_requests_total{op="read",outcome="refused"}`)
		return err == nil && refused >= 1, err
	})
	// libp2p's and the DHT's series are in the same answer, and no peer id is a label.
	for _, i := range []int{practice, specialist} {
		out, err := c.get(i, "/metrics", false)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"\nlibp2p_", "\ndht_", "\nmedledger_peers{class=\"member\"}"} {
			if !strings.Contains(out, want) {
				t.Errorf("node%d: no %q in /metrics", i, want[1:])
			}
		}
		if strings.Contains(out, "12D3KooW") || strings.Contains(out, reg.PatientID) {
			t.Errorf("node%d: /metrics names a peer or the patient", i)
		}
	}
}

// readAt waits until node5 reads the shared Condition.
func readAt(t *testing.T, c *cluster, what string) {
	t.Helper()
	c.waitFor(what, func() (bool, error) {
		out, err := c.medledger(specialist, "records", "get", "--home", testnet.ContainerHome(specialist), shared.condition, "--json")
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		var got struct {
			ResourceType string `json:"resourceType"`
		}
		return json.Unmarshal([]byte(out), &got) == nil && got.ResourceType == "Condition", nil
	})
}

// recheck: after the chaos the shared record still reads at node5.
func recheck(t *testing.T, c *cluster) {
	t.Helper()
	readAt(t, c, "node5 still reads the record after the chaos")
}
