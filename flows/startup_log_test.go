package flows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// Ensure each failed read of the verified domains is logged as it fails,
// with its cause and the wait before the next try, not only once the
// retries are used up.
func TestRefreshDomainsLogsEachFailedRead(t *testing.T) {
	dir := flowstest.NewDirectory()
	fails := 2
	dir.VerifiedDomainsFunc = func(context.Context) ([]string, error) {
		if fails > 0 {
			fails--
			return nil, &flows.DirectoryError{Op: "organization", Status: http.StatusServiceUnavailable, Message: "token service unreachable"}
		}
		return []string{"contoso.com"}, nil
	}
	var logs bytes.Buffer
	svc := flows.New(flows.Config{
		Directory: dir, Store: flowstest.NewStore(), Notifier: &flowstest.Notifier{},
		Logger:       slog.New(slog.NewJSONHandler(&logs, nil)),
		Sleep:        func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Transient:    flows.Backoff{Attempts: 5, Base: time.Second, Max: time.Minute},
		PollInterval: -1, DomainRefresh: time.Hour,
	})
	defer svc.Close()
	if err := svc.RefreshDomains(t.Context()); err != nil {
		t.Fatal(err)
	}
	var retries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "read verified domains failed; retrying" {
			retries = append(retries, m)
		}
	}
	if len(retries) != 2 {
		t.Fatalf("%d retry lines, want 2:\n%s", len(retries), logs.String())
	}
	for _, m := range retries {
		if !strings.Contains(m["err"].(string), "graph 503") || m["retry_in"] == nil || m["level"] != "WARN" {
			t.Errorf("retry line %v lacks the cause or the wait", m)
		}
	}
	if d := svc.Domains(); len(d) != 1 {
		t.Errorf("domains = %v", d)
	}
}
