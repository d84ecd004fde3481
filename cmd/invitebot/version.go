package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// buildInfo says which build is running, from the build information the
// Go toolchain embeds in the binary.
type buildInfo struct {
	Version   string // module version: a tag like v1.2.0, or (devel) for a build in a checkout
	Revision  string // VCS commit; "" when built without VCS information (e.g. -buildvcs=false)
	Time      string // commit time, RFC 3339
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string
}

func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Version: "unknown"}
	}
	b := buildInfo{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

// String is the one-line form `invitebot version` prints.
func (b buildInfo) String() string {
	s := "invitebot " + b.Version
	if b.Revision != "" {
		s += " revision " + b.Revision
		if b.Time != "" {
			s += " (" + b.Time + ")"
		}
		if b.Modified {
			s += " with uncommitted changes"
		}
	}
	return s + ", " + b.GoVersion
}

// versionCmd is `invitebot version`.
func versionCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: invitebot version

Prints the module version, the VCS revision the binary was built from (and
whether the work tree had uncommitted changes) and the Go version. The same
is logged when serve starts and exposed as the metric invitebot_build_info.
`)
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, readBuildInfo())
	return err
}
