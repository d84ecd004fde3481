package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// Ensure /readyz says why it is not ready: start-up reads pending, the
// store not answering, shutting down; and 200 otherwise.
func TestReadyzReasons(t *testing.T) {
	var storeErr atomic.Value
	storeErr.Store(error(flows.ErrNotFound)) // an answer
	a := &app{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.ready.ping = func(context.Context) error { return storeErr.Load().(error) }
	get := func() (int, string) {
		w := httptest.NewRecorder()
		a.readyz(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code, w.Body.String()
	}
	doneDomains := a.ready.expect("verified domains")
	doneGroups := a.ready.expect("Slack user groups")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "verified domains, Slack user groups") {
		t.Errorf("starting: %d %q, want 503 naming both reads", code, body)
	}
	doneDomains()
	doneGroups()
	doneGroups() // twice is fine
	if code, body := get(); code != http.StatusOK || body != "ready\n" {
		t.Errorf("started: %d %q, want 200 ready", code, body)
	}
	storeErr.Store(errors.New("dial tcp 10.0.0.5:5432: connection refused"))
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "store does not answer") || strings.Contains(body, "10.0.0.5") {
		t.Errorf("store down: %d %q, want 503 saying so (without the error's details)", code, body)
	}
	storeErr.Store(error(flows.ErrNotFound))
	a.ready.stop()
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("stopping: %d %q, want 503 shutting down", code, body)
	}
}

// holdDomains holds the reads of the verified domains (GET /organization,
// or GET /domains with only Domain.Read.All) until released.
type holdDomains struct{ release chan struct{} }

func (h holdDomains) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/domains") || strings.HasSuffix(r.URL.Path, "/organization") {
		select {
		case <-h.release:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Ensure /readyz is served in both modes, 503 until the tenant's domains
// were read at start-up, then 200.
func TestE2EReadyz(t *testing.T) {
	for name, tr := range map[string]transport{"HTTP": overHTTP, "SocketMode": overSocket} {
		t.Run(name, func(t *testing.T) {
			hold := holdDomains{release: make(chan struct{})}
			h := startWith(t, tr, deps{pollInterval: -1, graphTransport: hold})
			get := func() (int, string) {
				resp, err := http.Get(h.player.BotURL + "/readyz")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "verified domains") {
				t.Fatalf("while the domains are read: %d %q, want 503 naming them", code, body)
			}
			close(hold.release)
			for { // polled as a load balancer does
				code, body := get()
				if code == http.StatusOK {
					break
				}
				if h.ctx.Err() != nil {
					t.Fatalf("never ready: %d %q", code, body)
				}
				_ = flows.SleepContext(h.ctx, 10*time.Millisecond)
			}
		})
	}
}
