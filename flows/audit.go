package flows

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"time"
)

// AuditHeader is the header row of the audit log as CSV.
var AuditHeader = []string{"time", "invitation_id", "object_id", "actor", "action", "detail"}

// AuditCSV writes the audit events at or after since to w as CSV (see
// WriteAuditCSV) and returns how many rows it wrote. Only admins may read
// the audit log: anyone else gets ErrNotAuthorized and nothing is written.
func (s *Service) AuditCSV(ctx context.Context, who Inviter, since time.Time, w io.Writer) (int, error) {
	if !s.Policy().IsAdmin(who.UserID) {
		return 0, ErrNotAuthorized
	}
	events, err := s.store.AuditLog(ctx, since)
	if err != nil {
		return 0, fmt.Errorf("read audit log: %w", err)
	}
	return WriteAuditCSV(w, events)
}

// WriteAuditCSV writes events to w as CSV (RFC 4180, via encoding/csv):
// the AuditHeader row, then one row per event in the order given, with the
// time in RFC 3339 UTC. It returns the number of event rows written.
//
// A cell that a spreadsheet would run as a formula (one starting with =,
// +, -, @, a tab or a carriage return) is written with a leading
// apostrophe, so that opening the file cannot execute what a guest's name
// or a Graph message put into the log. Events carry no redeem links, so
// neither does the CSV.
func WriteAuditCSV(w io.Writer, events []Event) (int, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(AuditHeader); err != nil {
		return 0, fmt.Errorf("write audit csv: %w", err)
	}
	n := 0
	for _, ev := range events {
		row := []string{
			ev.At.UTC().Format(time.RFC3339),
			ev.InvitationID,
			ev.ObjectID,
			ev.Actor,
			ev.Action,
			ev.Detail,
		}
		for i := range row {
			row[i] = csvSafe(row[i])
		}
		if err := cw.Write(row); err != nil {
			return n, fmt.Errorf("write audit csv: %w", err)
		}
		n++
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return n, fmt.Errorf("write audit csv: %w", err)
	}
	return n, nil
}

// csvSafe defuses CSV (formula) injection: spreadsheets evaluate a cell
// that starts with one of these characters, so such a cell gets a leading
// apostrophe, which they show as text (OWASP's advice).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
