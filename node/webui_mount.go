package node

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/medledger/medledger/node/patientdir"
	"github.com/medledger/medledger/node/webui"
)

// PatientsFile is the local patient directory in a home (node/patientdir): names, birth dates
// and record numbers, sealed under a key derived from the provider key.
func (h Home) PatientsFile() string { return filepath.Join(string(h), "patients.dir") }

// attachUI opens the patient directory (sealed under a key derived from seed, the provider's
// signing seed) and serves the practice's web pages beside the API. It needs attachStaff first:
// the pages sign staff in through the same gate.
func (a *API) attachUI(h Home, seed []byte, chainID string, idle time.Duration, log *slog.Logger) error {
	dir, err := patientdir.Open(h.PatientsFile(), seed, nil)
	if err != nil {
		return err
	}
	a.patients = dir
	provider := ""
	if a.info.Provider != nil {
		provider = a.info.Provider.String()
	}
	ui, err := webui.New(webui.Config{
		API: a, Authenticate: a.staff.Authenticate, Patients: dir,
		ProviderID: provider, ChainID: chainID, Idle: idle, Log: log,
	})
	if err != nil {
		return err
	}
	a.ui = ui
	return nil
}
