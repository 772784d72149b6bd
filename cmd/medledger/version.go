package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what medledger version prints.
type versionInfo struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go"`
}

// buildVersion reads the module version and the VCS stamp the Go toolchain embeds.
func buildVersion(info *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Module: "github.com/medledger/medledger", Version: "unknown", GoVersion: runtime.Version()}
	if !ok || info == nil {
		return v
	}
	if info.Main.Path != "" {
		v.Module = info.Main.Path
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		v.GoVersion = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the binary's module version, source revision and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion(debug.ReadBuildInfo())
			if asJSON {
				return printJSON(cmd, v)
			}
			rev := v.Revision
			if rev == "" {
				rev = "unknown revision"
			} else if v.Modified {
				rev += " (modified)"
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "medledger %s, %s, %s\n", v.Version, rev, v.GoVersion)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}
