package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
)

// The README's sample bulk file is docs/bulk-sample.csv, and every row of
// it is well-formed under the example policy (`invitebot policy example`).
func TestBulkSample(t *testing.T) {
	sample, err := os.ReadFile("../../docs/bulk-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, append([]byte("```csv\n"), sample...)) {
		t.Error("README's sample CSV differs from docs/bulk-sample.csv")
	}
	p, err := config.ParsePolicy(config.Example)
	if err != nil {
		t.Fatal(err)
	}
	f, err := flows.ParseBulk(bytes.NewReader(sample), "bulk-sample.csv", flows.BulkLimits{}, p.Flows(config.DefaultRedirectURL))
	if err != nil || len(f.Malformed) != 0 || len(f.Rows) != 3 {
		t.Fatalf("sample: %v, malformed %+v", err, f)
	}
	if carol := f.Rows[2].Request; len(carol.Groups) != 2 || carol.Justification == "" || carol.DisplayName != "Carol Díaz, PhD" {
		t.Errorf("carol = %+v", carol)
	}
}

// Off a terminal the bar prints a line at each tenth of the rows (and the
// first and last), not one per row.
func TestProgressBarLines(t *testing.T) {
	var b strings.Builder
	p := newProgressBar(&b, false, 20)
	for i := range 20 {
		o := flows.BulkInvited
		if i == 0 {
			o = flows.BulkFailed
		}
		p.add(flows.BulkResult{Outcome: o})
	}
	p.finish()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 11 || lines[0] != "[..............................] 0/20 rows" ||
		lines[10] != "[##############################] 20/20 rows, 1 needs attention" {
		t.Errorf("%d lines:\n%s", len(lines), b.String())
	}
	var tty strings.Builder
	p = newProgressBar(&tty, true, 2)
	p.add(flows.BulkResult{Outcome: flows.BulkInvited})
	p.finish()
	if want := "\r[..............................] 0/2 rows\x1b[K\r[###############...............] 1/2 rows\x1b[K\n"; tty.String() != want {
		t.Errorf("terminal output %q, want %q", tty.String(), want)
	}
}
