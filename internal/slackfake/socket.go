package slackfake

// Socket Mode, as Slack runs it: apps.connections.open (app-level xapp-
// token) hands out a single-use wss URL; on connect Slack sends "hello",
// pings periodically, delivers envelopes ({envelope_id, type, payload,
// accepts_response_payload}) and expects {envelope_id, payload} acks; a
// "disconnect" envelope asks the app to reconnect. An app may hold several
// connections at once (Slack allows about 10; replicas of an app each hold
// one), and Slack sends each envelope to one of them, at random.
// https://api.slack.com/apis/socket-mode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// PingInterval is how often the fake pings a connected app. slack-go
// reconnects if it sees no ping for 30 s.
var PingInterval = 5 * time.Second

// socketConn is one app connection.
type socketConn struct {
	ws     *websocket.Conn
	writes chan []byte
	done   chan struct{}
	once   sync.Once // close may be called from the server, the reader and the writer at once
	seq    int       // its index in Server.delivered
}

// Ack is an app's acknowledgement of one envelope.
type Ack struct {
	Payload json.RawMessage // the response payload, if any
	Latency time.Duration   // from sending the envelope to reading the ack
}

func (s *Server) appsConnectionsOpen(_ http.ResponseWriter, r *http.Request, _ url.Values, _ map[string]any) any {
	ticket := randomHex(16)
	s.mu.Lock()
	s.tickets[ticket] = true
	s.mu.Unlock()
	return map[string]any{"ok": true, "url": "ws://" + r.Host + "/socket-mode/link?ticket=" + ticket}
}

// serveSocket upgrades a connection opened with a ticket and runs it.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid := s.tickets[ticket]
	delete(s.tickets, ticket)
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := (&websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &socketConn{ws: ws, writes: make(chan []byte, 16), done: make(chan struct{})}
	s.mu.Lock()
	c.seq = len(s.delivered)
	s.delivered = append(s.delivered, 0)
	s.mu.Unlock()
	hello, _ := json.Marshal(map[string]any{
		"type": "hello", "num_connections": 1,
		"debug_info":      map[string]any{"host": "applink-fake", "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": AppID},
	})
	c.writes <- hello
	go c.writeLoop()
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.connects++
	s.signal()
	s.mu.Unlock()
	s.readLoop(c)
}

func (c *socketConn) close() {
	c.once.Do(func() { close(c.done) })
	_ = c.ws.Close()
}

// writeLoop is the connection's only writer (gorilla/websocket allows one).
func (c *socketConn) writeLoop() {
	t := time.NewTicker(PingInterval)
	defer t.Stop()
	_ = c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
	for {
		select {
		case <-c.done:
			return
		case msg := <-c.writes:
			if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				c.close()
				return
			}
		case <-t.C:
			if err := c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second)); err != nil {
				c.close()
				return
			}
		}
	}
}

// readLoop reads acks and hands them to whoever delivered the envelope.
func (s *Server) readLoop(c *socketConn) {
	defer func() {
		c.close()
		s.mu.Lock()
		s.conns = slices.DeleteFunc(s.conns, func(o *socketConn) bool { return o == c })
		s.mu.Unlock()
	}()
	for {
		_, raw, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(raw, &ack) != nil || ack.EnvelopeID == "" {
			continue
		}
		s.mu.Lock()
		ch := s.pending[ack.EnvelopeID]
		delete(s.pending, ack.EnvelopeID)
		s.mu.Unlock()
		if ch != nil {
			ch <- ack.Payload
		}
	}
}

// Connections returns how many times an app has connected over Socket Mode.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects
}

// WaitConnected waits until an app has connected at least n times.
func (s *Server) WaitConnected(ctx context.Context, n int) error {
	return s.WaitFor(ctx, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.connects >= n && len(s.conns) > 0
	})
}

// SetSocketPicker replaces the random choice of the connection that gets
// an envelope: pick(n) returns an index among the n open connections, in
// the order they connected. Tests use it to reach each replica in turn.
func (s *Server) SetSocketPicker(pick func(n int) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pick = pick
}

// SocketDeliveries returns how many envelopes each connection ever
// opened was sent, in the order they connected.
func (s *Server) SocketDeliveries() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delivered)
}

// Deliver sends an envelope of the given type ("slash_commands",
// "interactive", "events_api") to the connected app and waits for its ack.
func (s *Server) Deliver(ctx context.Context, typ string, payload any) (Ack, error) {
	return s.deliver(ctx, typ, payload, 0, "")
}

// deliver is Deliver with the envelope's retry_attempt and retry_reason
// (Slack redelivering an Events API event).
func (s *Server) deliver(ctx context.Context, typ string, payload any, attempt int, reason string) (Ack, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return Ack{}, err
	}
	id := randomHex(8)
	env, _ := json.Marshal(map[string]any{
		"envelope_id": id, "type": typ, "payload": json.RawMessage(p),
		"accepts_response_payload": typ != "events_api", "retry_attempt": attempt, "retry_reason": reason,
	})
	ch := make(chan json.RawMessage, 1)
	s.mu.Lock()
	var c *socketConn
	if n := len(s.conns); n > 0 {
		i := mrand.IntN(n)
		if s.pick != nil {
			i = s.pick(n) % n
		}
		c = s.conns[i]
		s.pending[id] = ch
		s.delivered[c.seq]++
	}
	s.mu.Unlock()
	if c == nil {
		return Ack{}, errors.New("slackfake: no app connected over Socket Mode")
	}
	start := time.Now()
	select {
	case c.writes <- env:
	case <-c.done:
		return Ack{}, errors.New("slackfake: socket closed")
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
	select {
	case payload := <-ch:
		return Ack{Payload: payload, Latency: time.Since(start)}, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		return Ack{}, fmt.Errorf("slackfake: envelope %s not acknowledged: %w", typ, ctx.Err())
	}
}

// Disconnect sends Slack's "disconnect" envelope (reason
// "refresh_requested"), after which a well-behaved app reconnects.
// Every open connection gets it.
func (s *Server) Disconnect() error {
	s.mu.Lock()
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	if len(conns) == 0 {
		return errors.New("slackfake: no app connected over Socket Mode")
	}
	msg, _ := json.Marshal(map[string]any{"type": "disconnect", "reason": "refresh_requested",
		"debug_info": map[string]any{"host": "applink-fake"}})
	for _, c := range conns {
		select {
		case c.writes <- msg:
		case <-c.done:
			return errors.New("slackfake: socket closed")
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
