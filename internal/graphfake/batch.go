package graphfake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
)

// MaxBatchRequests is Graph's limit of sub-requests in one JSON batch.
const MaxBatchRequests = 20

type batchRequest struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	DependsOn []string          `json:"dependsOn"`
}

type batchResponse struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body,omitempty"`
}

// batch answers POST /$batch (Graph's JSON batching) and returns how many
// sub-requests it carried. Each item is routed like a top-level request
// (faults on its route, replication, handlers) but without auth (the batch
// was authorised) and without its own latency: the batch waits once, for
// the longest latency of its routes, as Graph runs items in parallel.
// Answers come back in reverse order, so clients must correlate by id.
// Chaos applies to the batch itself (RouteBatch, else "") and to each item
// (its route, else ""): an item gets its own status, Retry-After and
// after-effect, but neither latency nor a dropped connection.
func (t *Tenant) batch(w http.ResponseWriter, r *http.Request) int {
	var body struct {
		Requests []batchRequest `json:"requests"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid batch payload format.")
		return 0
	}
	reqs := body.Requests
	if msg := validateBatch(reqs); msg != "" {
		graphError(w, r, http.StatusBadRequest, "BadRequest", msg)
		return len(reqs)
	}
	routes := make([]Route, len(reqs))
	args := make([][]string, len(reqs))
	paths := make([]*url.URL, len(reqs))
	for i, q := range reqs {
		paths[i], routes[i], args[i] = itemRoute(q)
	}
	if !t.delayBatch(r, routes) {
		return len(reqs)
	}
	run := func() []batchResponse {
		out := make([]batchResponse, len(reqs))
		status := map[string]int{}
		for i, q := range reqs {
			out[i] = t.batchItem(r, q, paths[i], routes[i], args[i], status)
			status[strings.ToLower(q.ID)] = out[i].Status
		}
		return out
	}
	if rec, ok := w.(*statusRecorder); ok {
		rec.items = len(reqs) // logged even if the connection is dropped
	}
	if t.applyChaos(w, r, RouteBatch, false, func(http.ResponseWriter) { run() }) {
		return len(reqs)
	}
	f := t.takeFault(RouteBatch)
	if f != nil && !f.AfterEffect {
		f.write(w, r)
		return len(reqs)
	}
	out := run()
	if f != nil { // the items took effect, the answer is lost
		f.write(w, r)
		return len(reqs)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	writeJSON(w, http.StatusOK, map[string]any{"responses": out})
	return len(reqs)
}

// validateBatch returns Graph's message for a batch it refuses as a whole.
func validateBatch(reqs []batchRequest) string {
	switch {
	case len(reqs) == 0:
		return "Invalid batch payload format."
	case len(reqs) > MaxBatchRequests:
		return "Number of requests inside batch exceeds the limit."
	}
	seen := map[string]bool{}
	for _, q := range reqs {
		id := strings.ToLower(q.ID)
		switch {
		case q.ID == "" || q.Method == "" || q.URL == "":
			return "Batch request items must have id, method and url."
		case seen[id]:
			return "Batch request contains duplicate request id '" + q.ID + "'."
		case hasBody(q) && header(q.Headers, "Content-Type") == "":
			return "Content-Type header is required when a batch request item has a body."
		}
		for _, d := range q.DependsOn {
			if !seen[strings.ToLower(d)] {
				return "Batch request item '" + q.ID + "' depends on an unknown or later request id '" + d + "'."
			}
		}
		seen[id] = true
	}
	return ""
}

func hasBody(q batchRequest) bool {
	b := bytes.TrimSpace(q.Body)
	return len(b) > 0 && !bytes.Equal(b, []byte("null"))
}

func header(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// itemRoute resolves an item's relative URL ("/users/x?…" or "users/x?…").
// A nil URL or an empty route means Graph would refuse the item.
func itemRoute(q batchRequest) (*url.URL, Route, []string) {
	if strings.Contains(q.URL, "://") {
		return nil, "", nil
	}
	u, err := url.Parse("/v1.0/" + strings.TrimPrefix(q.URL, "/"))
	if err != nil {
		return nil, "", nil
	}
	route, args := match(strings.ToUpper(q.Method), strings.TrimPrefix(u.Path, "/v1.0"))
	return u, route, args
}

func (t *Tenant) delayBatch(r *http.Request, routes []Route) bool {
	t.mu.Lock()
	d := max(t.latency[RouteBatch], t.latency[""])
	for _, rt := range routes {
		d = max(d, t.latency[rt])
	}
	t.mu.Unlock()
	return wait(r, d)
}

// batchItem runs one item and renders its answer.
func (t *Tenant) batchItem(outer *http.Request, q batchRequest, u *url.URL, route Route, args []string, done map[string]int) batchResponse {
	rec := httptest.NewRecorder()
	target := outer.URL.Path
	if u != nil {
		target = u.String()
	}
	req, err := http.NewRequestWithContext(outer.Context(), strings.ToUpper(q.Method), target, bytes.NewReader(q.Body))
	if err != nil {
		u = nil
		req, _ = http.NewRequestWithContext(outer.Context(), http.MethodGet, target, nil)
	}
	for k, v := range q.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("client-request-id", outer.Header.Get("client-request-id"))
	rec.Header().Set("request-id", newGUID())
	failedDep := false
	for _, d := range q.DependsOn {
		failedDep = failedDep || done[strings.ToLower(d)] >= 400
	}
	switch {
	case u == nil:
		graphError(rec, req, http.StatusBadRequest, "BadRequest", "Invalid request URL '"+q.URL+"': batch items need a relative URL.")
	case route == RouteBatch:
		graphError(rec, req, http.StatusBadRequest, "BadRequest", "Nested batch requests are not supported.")
	case route == "":
		graphError(rec, req, http.StatusNotFound, "BadRequest", "Resource not found for the segment '"+u.Path+"'.")
	case failedDep:
		graphError(rec, req, http.StatusFailedDependency, "FailedDependency", "The request depends on a request that failed.")
	default:
		t.serve(rec, req, route, args, false)
	}
	res := batchResponse{ID: q.ID, Status: rec.Code, Headers: map[string]string{}}
	for k, v := range rec.Header() {
		if len(v) > 0 && k != "Content-Length" {
			res.Headers[k] = v[0]
		}
	}
	if b := bytes.TrimSpace(rec.Body.Bytes()); len(b) > 0 && json.Valid(b) {
		res.Body = b
	}
	item := Request{Method: req.Method, Path: req.URL.Path, RawQuery: req.URL.RawQuery, Status: rec.Code, Authorization: true, BatchID: q.ID}
	t.mu.Lock()
	t.batchItems = append(t.batchItems, item)
	t.mu.Unlock()
	return res
}
