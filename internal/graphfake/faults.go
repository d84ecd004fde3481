package graphfake

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// Fault is an injected failure, modelled on Microsoft Dev Proxy's.
type Fault struct {
	Status     int
	Code       string
	Message    string
	RetryAfter string // raw Retry-After value ("2", "0.5"); "" = none
	// AfterEffect performs the request's side effect and then fails: the
	// lost-answer case (a 504 whose write happened).
	AfterEffect bool
}

// Throttled is Graph's 429.
func Throttled(retryAfter string) Fault {
	return Fault{Status: http.StatusTooManyRequests, Code: "TooManyRequests", Message: "Please retry again later.", RetryAfter: retryAfter}
}

// Unavailable is Graph's 503.
func Unavailable() Fault {
	return Fault{Status: http.StatusServiceUnavailable, Code: "serviceNotAvailable", Message: "The service is temporarily unavailable."}
}

type fault struct {
	Fault
	n int // remaining; <0 forever
}

func (f *fault) write(w http.ResponseWriter, r *http.Request) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	graphError(w, r, f.Status, f.Code, f.Message)
}

// Fail makes the next n requests to route ("" = any route without a fault
// of its own) fail with f (n < 0: until Reset). Without AfterEffect a
// failed request has no effect.
func (t *Tenant) Fail(route Route, n int, f Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.faults[route] = &fault{Fault: f, n: n}
}

// SetLatency delays answers on route ("" = every route).
func (t *Tenant) SetLatency(route Route, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latency[route] = d
}

// SetReplicationDelay makes a user created by an invitation invisible to
// the next n reads and writes that target it (404, as Graph answers during
// replication).
func (t *Tenant) SetReplicationDelay(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.replication = n
}

// Reset clears faults, chaos, latency and replication delay (not data).
func (t *Tenant) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.faults, t.latency, t.replication = map[Route]*fault{}, map[Route]time.Duration{}, 0
	t.chaos, t.throttledUntil = nil, nil
}

func (t *Tenant) takeFault(route Route) *fault {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.faults[route]
	if f == nil || f.n == 0 {
		f = t.faults[""] // an outage of every route
	}
	if f == nil || f.n == 0 {
		return nil
	}
	if f.n > 0 {
		f.n--
	}
	c := *f
	return &c
}

// delay waits the configured latency; false if the client went away.
func (t *Tenant) delay(r *http.Request, route Route) bool {
	t.mu.Lock()
	d := max(t.latency[route], t.latency[""])
	t.mu.Unlock()
	return wait(r, d)
}

// wait waits d; false if the client went away first.
func wait(r *http.Request, d time.Duration) bool {
	if d == 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-tm.C:
		return true
	}
}

// Clause is one `or` term of a user filter.
type Clause struct {
	Property string // mail, userPrincipalName, otherMails, proxyAddresses
	Value    string
}

// Match reports whether u satisfies the clause (case-insensitively).
func (c Clause) Match(u *User) bool {
	eq := func(s string) bool { return strings.EqualFold(s, c.Value) }
	switch c.Property {
	case "mail":
		return eq(u.Mail)
	case "userPrincipalName":
		return eq(u.UserPrincipalName)
	case "otherMails":
		for _, m := range u.OtherMails {
			if eq(m) {
				return true
			}
		}
	case "proxyAddresses":
		for _, p := range u.ProxyAddresses {
			if eq(p) {
				return true
			}
		}
	}
	return false
}

// ParseFilter parses the $filter forms invitebot sends, joined by " or ":
// `mail eq 'x'`, `userPrincipalName eq 'x'`, `otherMails/any(v:v eq 'x')`
// and `proxyAddresses/any(v:v eq 'smtp:x')`, with OData literals (” for
// a quote). Anything else is an error, as Graph's Request_UnsupportedQuery.
func ParseFilter(s string) ([]Clause, error) {
	var out []Clause
	rest := strings.TrimSpace(s)
	if rest == "" {
		return nil, nil
	}
	for {
		c, tail, err := parseClause(rest)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		tail = strings.TrimSpace(tail)
		if tail == "" {
			return out, nil
		}
		if !strings.HasPrefix(strings.ToLower(tail), "or ") {
			return nil, errors.New("expected 'or' near '" + tail + "'")
		}
		rest = strings.TrimSpace(tail[3:])
	}
}

func parseClause(s string) (Clause, string, error) {
	for _, prop := range []string{"mail", "userPrincipalName"} {
		if p := prop + " eq "; strings.HasPrefix(s, p) {
			v, tail, err := literal(s[len(p):])
			return Clause{Property: prop, Value: v}, tail, err
		}
	}
	for _, prop := range []string{"otherMails", "proxyAddresses"} {
		p := prop + "/any("
		if !strings.HasPrefix(s, p) {
			continue
		}
		rest := s[len(p):]
		colon := strings.IndexByte(rest, ':')
		if colon <= 0 {
			return Clause{}, "", errors.New("malformed lambda")
		}
		v := rest[:colon]
		rest = rest[colon+1:]
		if !strings.HasPrefix(rest, v+" eq ") {
			return Clause{}, "", errors.New("malformed lambda body")
		}
		val, tail, err := literal(rest[len(v)+4:])
		if err != nil {
			return Clause{}, "", err
		}
		if !strings.HasPrefix(tail, ")") {
			return Clause{}, "", errors.New("missing ')'")
		}
		return Clause{Property: prop, Value: val}, tail[1:], nil
	}
	return Clause{}, "", errors.New("unsupported clause '" + s + "'")
}

// literal reads an OData string literal at the start of s.
func literal(s string) (string, string, error) {
	if !strings.HasPrefix(s, "'") {
		return "", "", errors.New("expected a string literal")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", errors.New("unterminated string literal")
}
