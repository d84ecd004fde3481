package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// Log attribute keys added from the context.
const (
	LogKeyRequestID    = "request_id"
	LogKeyInvitationID = "invitation_id"
)

type requestKey struct{}

// WithRequestID returns ctx carrying the ID of the Slack request it
// serves.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestKey{}, id)
}

// RequestID returns the request ID ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestKey{}).(string)
	return id
}

// newRequestID returns a short random ID for an HTTP request.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// LogHandler returns h adding to each record the request ID
// (request_id) and the invitation ID (invitation_id) that its context
// carries, if any. Wrapping a handler that LogHandler returned returns it
// unchanged.
func LogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(logHandler); ok {
		return h
	}
	return logHandler{h}
}

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String(LogKeyRequestID, id))
	}
	if id := flows.InvitationID(ctx); id != "" {
		r.AddAttrs(slog.String(LogKeyInvitationID, id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(as)}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h.Handler.WithGroup(name)}
}

// identified gives each request an ID (in its context and the X-Request-Id
// answer header) and logs it when it is answered (at debug level).
func (b *Bot) identified(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		ctx := WithRequestID(r.Context(), newRequestID())
		w.Header().Set("X-Request-Id", RequestID(ctx))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		b.log.DebugContext(ctx, "slack request", "path", r.URL.Path, "status", sw.status, "took", time.Since(began).Round(time.Microsecond))
	})
}

// statusWriter records the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
