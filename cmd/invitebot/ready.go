package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
)

// readiness is what GET /readyz answers: ready once the store answers and
// every start-up read has finished, and not while shutting down.
type readiness struct {
	// ping asks the store something; any answer (ErrNotFound too) will do.
	ping     func(context.Context) error
	mu       sync.Mutex
	pending  []string // start-up reads not finished yet
	stopping bool
}

// expect records a start-up read; done marks it finished.
func (r *readiness) expect(what string) (done func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, what)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.pending = slices.DeleteFunc(r.pending, func(s string) bool { return s == what })
	}
}

// stop makes /readyz answer 503 from now on, so load balancers stop
// sending requests before the server shuts down.
func (r *readiness) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopping = true
}

// notReady returns why the replica is not ready, or "".
func (r *readiness) notReady() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopping:
		return "shutting down"
	case len(r.pending) > 0:
		return "start-up reads not finished: " + strings.Join(r.pending, ", ")
	}
	return ""
}

// readyz answers GET /readyz: 200 "ready", or 503 with the reason.
func (a *app) readyz(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	why := a.ready.notReady()
	if why == "" {
		ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
		defer cancel()
		if err := a.ready.ping(ctx); err != nil && !errors.Is(err, flows.ErrNotFound) {
			a.log.Warn("readiness: store does not answer", "err", err)
			why = "store does not answer"
		}
	}
	if why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s\n", why)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// leaseHolder names this process as the background lease's holder. On a
// store only one process can open (a bbolt file: its lock decides), the
// name is the same at every start, so a process restarted after a crash
// renews the lease its predecessor left instead of waiting for it to
// lapse. Replicas sharing a database each get their own name.
func leaseHolder(db string) string {
	if !config.IsPostgresURL(db) {
		return "the only process"
	}
	return replicaName()
}

// replicaName names this process among the replicas sharing a store: host
// name, process ID and a random part (a restarted pod keeps its name).
func replicaName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
