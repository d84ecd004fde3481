package flows_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// readCSV parses the audit CSV and checks its header.
func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("not valid CSV: %v\n%s", err, b)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], flows.AuditHeader) {
		t.Fatalf("header = %q, want %q", rows, flows.AuditHeader)
	}
	return rows[1:]
}

// Ensure every event becomes one row, times are RFC 3339 UTC, CSV quoting
// survives commas, quotes and newlines, and cells a spreadsheet would run
// as formulas are defused with a leading apostrophe.
func TestWriteAuditCSV(t *testing.T) {
	at := time.Date(2025, 3, 4, 15, 4, 5, 0, time.FixedZone("CET", 3600))
	events := []flows.Event{
		{At: at, InvitationID: "inv_1", ObjectID: "u-1", Actor: "U0ANN", Action: "requested", Detail: "bob@fabrikam.com"},
		{At: at, InvitationID: "inv_1", Actor: flows.ActorBot, Action: "failed", Detail: `graph said: "no", really,` + "\nsecond line"},
		{At: at, InvitationID: "=HYPERLINK(\"http://evil\")", ObjectID: "+1", Actor: "-2+3", Action: "@SUM(A1)", Detail: "\t=cmd"},
		{At: at, InvitationID: "inv_2", Actor: "U0ANN", Action: "denied", Detail: "\r=1"},
	}
	var buf bytes.Buffer
	n, err := flows.WriteAuditCSV(&buf, events)
	if err != nil || n != len(events) {
		t.Fatalf("WriteAuditCSV = %d, %v; want %d rows", n, err, len(events))
	}
	rows := readCSV(t, buf.Bytes())
	want := [][]string{
		{"2025-03-04T14:04:05Z", "inv_1", "u-1", "U0ANN", "requested", "bob@fabrikam.com"},
		{"2025-03-04T14:04:05Z", "inv_1", "", "invitebot", "failed", `graph said: "no", really,` + "\nsecond line"},
		{"2025-03-04T14:04:05Z", "'=HYPERLINK(\"http://evil\")", "'+1", "'-2+3", "'@SUM(A1)", "'\t=cmd"},
		{"2025-03-04T14:04:05Z", "inv_2", "", "U0ANN", "denied", "'\r=1"},
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("rows =\n%q\nwant\n%q", rows, want)
	}

	t.Run("Empty", func(t *testing.T) {
		var buf bytes.Buffer
		n, err := flows.WriteAuditCSV(&buf, nil)
		if err != nil || n != 0 {
			t.Fatalf("WriteAuditCSV(nil) = %d, %v", n, err)
		}
		if rows := readCSV(t, buf.Bytes()); len(rows) != 0 {
			t.Errorf("rows = %q, want only the header", rows)
		}
	})

	t.Run("WriteError", func(t *testing.T) {
		if _, err := flows.WriteAuditCSV(failingWriter{}, events); err == nil {
			t.Error("a failing writer gave no error")
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// Ensure only admins get the audit log, that it holds the invitation's
// events (and never its redeem link), and that since filters it.
func TestAuditCSV(t *testing.T) {
	e := newEnv(t)
	inv := e.submit(t, "V1", request())
	if inv.RedeemURL == "" {
		t.Fatal("the invitation has no redeem link to look for")
	}
	admin := flows.Inviter{TeamID: "T1", UserID: "UADMIN"}

	t.Run("ErrNotAuthorized", func(t *testing.T) {
		var buf bytes.Buffer
		n, err := e.svc.AuditCSV(t.Context(), inviter, time.Time{}, &buf)
		if !errors.Is(err, flows.ErrNotAuthorized) || n != 0 || buf.Len() != 0 {
			t.Errorf("AuditCSV by a non-admin = %d, %v, %d bytes; want ErrNotAuthorized and nothing written", n, err, buf.Len())
		}
	})

	t.Run("OK", func(t *testing.T) {
		var buf bytes.Buffer
		n, err := e.svc.AuditCSV(t.Context(), admin, time.Now().Add(-time.Hour), &buf)
		if err != nil || n != len(inv.History) {
			t.Fatalf("AuditCSV = %d, %v; want %d rows", n, err, len(inv.History))
		}
		rows := readCSV(t, buf.Bytes())
		if len(rows) != n {
			t.Fatalf("%d rows, AuditCSV said %d", len(rows), n)
		}
		for i, ev := range inv.History {
			if rows[i][1] != inv.ID || rows[i][4] != ev.Action || rows[i][3] != ev.Actor {
				t.Errorf("row %d = %q, want event %+v", i, rows[i], ev)
			}
			if at, err := time.Parse(time.RFC3339, rows[i][0]); err != nil || !strings.HasSuffix(rows[i][0], "Z") || !at.Equal(ev.At.Truncate(time.Second)) {
				t.Errorf("row %d time %q, want %s in UTC (%v)", i, rows[i][0], ev.At, err)
			}
		}
		if bytes.Contains(buf.Bytes(), []byte(inv.RedeemURL)) || bytes.Contains(buf.Bytes(), []byte("redeem")) {
			t.Errorf("the audit CSV contains the redeem link:\n%s", buf.Bytes())
		}
	})

	t.Run("Since", func(t *testing.T) {
		var buf bytes.Buffer
		n, err := e.svc.AuditCSV(t.Context(), admin, time.Now().Add(time.Hour), &buf)
		if err != nil || n != 0 {
			t.Errorf("AuditCSV since the future = %d, %v; want 0 rows", n, err)
		}
		if rows := readCSV(t, buf.Bytes()); len(rows) != 0 {
			t.Errorf("rows = %q, want only the header", rows)
		}
	})
}
