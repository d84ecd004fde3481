package metrics

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// roundTripper is a func as an http.RoundTripper.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Graph returns next (nil: http.DefaultTransport) counting each request by
// endpoint and status, and timing it to the response headers. Give it as
// the transport under the Graph SDK's middleware, so each HTTP request is
// counted once, retries included.
func (m *Registry) Graph(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		endpoint := r.Method + " " + GraphEndpoint(r.URL.EscapedPath())
		began := time.Now()
		resp, err := next.RoundTrip(r)
		status := "error"
		if err == nil {
			status = strconv.Itoa(resp.StatusCode)
		}
		m.graphRequests.WithLabelValues(endpoint, status).Inc()
		m.graphDuration.WithLabelValues(endpoint).Observe(time.Since(began).Seconds())
		return resp, err
	})
}

var (
	graphVersion = regexp.MustCompile(`^(v[0-9]+(\.[0-9]+)?|beta)$`)
	graphWord    = regexp.MustCompile(`^[A-Za-z][A-Za-z.]*$`) // entity sets, navigation properties, casts
)

// GraphEndpoint returns the template of a Graph URL path: what precedes
// the version (and the version) is dropped, and every key (object ID, UPN,
// email, anything that is not a plain property name) becomes {id}:
// /v1.0/groups/1f…/members/$ref → /groups/{id}/members/$ref.
func GraphEndpoint(escapedPath string) string {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	for i, s := range segs {
		if graphVersion.MatchString(s) {
			segs = segs[i+1:]
			break
		}
	}
	key := false // a key may follow a collection or navigation property
	for i, s := range segs {
		switch {
		case s == "":
		case strings.HasPrefix(s, "$") && graphWord.MatchString(s[1:]): // $ref, $batch, $count, $value
			key = false
		case key || !graphWord.MatchString(s):
			segs[i], key = "{id}", false
		default:
			key = true
		}
	}
	return "/" + strings.Join(segs, "/")
}

// maxPeek bounds how much of a Slack answer is read to find its "ok" and
// "error" fields (Slack writes them first).
const maxPeek = 64 << 10

var (
	slackMethodRE = regexp.MustCompile(`^[a-z]+(\.[A-Za-z]+)+$`)
	slackErrorRE  = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)

// Slack returns next (nil: http.DefaultTransport) counting Web API calls
// by method, and their failures by method and error: Slack's error code
// from a JSON {"ok":false,"error":…} answer (which comes with HTTP 200),
// http_<status> for any other status than 2xx, or transport. The method is
// the path under apiURL (Slack's Web API base URL); requests elsewhere (file
// uploads and downloads) count as method "other". The answer's body
// reaches the caller intact; bodies that are not JSON are not read.
func (m *Registry) Slack(next http.RoundTripper, apiURL string) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	base, err := url.Parse(apiURL)
	if err != nil {
		base = &url.URL{}
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		method := "other" // an upload or download URL, or something unexpected
		if rest, ok := strings.CutPrefix(r.URL.Path, strings.TrimSuffix(base.Path, "/")+"/"); ok && r.URL.Host == base.Host && slackMethodRE.MatchString(rest) {
			method = rest
		}
		m.slackRequests.WithLabelValues(method).Inc()
		resp, err := next.RoundTrip(r)
		failure := ""
		switch {
		case err != nil:
			failure = "transport"
		case resp.StatusCode < 200 || resp.StatusCode > 399: // a redirect (a file download) is not a failure
			failure = "http_" + strconv.Itoa(resp.StatusCode)
		case isJSON(resp.Header):
			failure = slackError(resp)
		}
		if failure != "" {
			m.slackErrors.WithLabelValues(method, failure).Inc()
		}
		return resp, err
	})
}

func isJSON(h http.Header) bool {
	t, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && t == "application/json"
}

// slackError reads the start of resp's body for Slack's "ok" and "error"
// fields and puts what it read back in front of the rest. It returns the
// error code of an answer that is not ok ("other" if the code looks odd),
// else "".
func slackError(resp *http.Response) string {
	head, err := io.ReadAll(io.LimitReader(resp.Body, maxPeek))
	rest := io.Reader(resp.Body)
	if err != nil {
		rest = errReader{err}
	}
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(head), rest), resp.Body}

	dec := json.NewDecoder(bytes.NewReader(head))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	var (
		notOK bool
		code  string
	)
fields:
	for dec.More() && (!notOK || code == "") {
		k, err := dec.Token()
		if err != nil {
			break
		}
		switch k {
		case "ok":
			var ok bool
			if dec.Decode(&ok) != nil || ok {
				return ""
			}
			notOK = true
		case "error":
			if dec.Decode(&code) != nil {
				code = "other"
			}
		default:
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				break fields // cut off by maxPeek
			}
		}
	}
	switch {
	case !notOK:
		return ""
	case !slackErrorRE.MatchString(code):
		return "other"
	}
	return code
}

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
