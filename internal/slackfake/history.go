package slackfake

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// conversationsHistory answers conversations.history as Slack does:
// the channel's messages newest first (ephemeral messages are not part of
// it), at most limit (default 100, at most 999) per page, within oldest
// and latest (exclusive unless inclusive=1), paged with cursor. A message's
// metadata is returned only with include_all_metadata=1.
func (s *Server) conversationsHistory(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
	channel := f.Get("channel")
	if channel == "" {
		return slackErr("channel_not_found")
	}
	limit := 100
	if v := f.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return slackErr("invalid_limit")
		}
		limit = min(n, 999)
	}
	oldest, latest := tsValue(f.Get("oldest")), tsValue(f.Get("latest"))
	inclusive := f.Get("inclusive") == "1" || f.Get("inclusive") == "true"
	meta := f.Get("include_all_metadata") == "1" || f.Get("include_all_metadata") == "true"
	skip := 0
	if c := f.Get("cursor"); c != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(c, "next_ts:"))
		if err != nil || n < 0 {
			return slackErr("invalid_cursor")
		}
		skip = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var in []Message
	for i := len(s.messages) - 1; i >= 0; i-- {
		m := s.messages[i]
		if m.Channel != channel || m.Ephemeral {
			continue
		}
		ts := tsValue(m.TS)
		if (oldest > 0 && (ts < oldest || (ts == oldest && !inclusive))) || (latest > 0 && (ts > latest || (ts == latest && !inclusive))) {
			continue
		}
		in = append(in, m)
	}
	in = in[min(skip, len(in)):]
	more := len(in) > limit
	in = in[:min(limit, len(in))]
	msgs := make([]map[string]any, 0, len(in))
	for _, m := range in {
		j := m.apiJSON()
		if meta && len(m.Metadata) > 0 {
			j["metadata"] = json.RawMessage(m.Metadata)
		}
		msgs = append(msgs, j)
	}
	out := map[string]any{"ok": true, "messages": msgs, "has_more": more, "pin_count": 0}
	if more {
		out["response_metadata"] = map[string]any{"next_cursor": "next_ts:" + strconv.Itoa(skip+limit)}
	}
	return out
}

// tsValue orders message timestamps ("1712345678.000123"); 0 for none.
func tsValue(ts string) float64 {
	v, _ := strconv.ParseFloat(ts, 64)
	return v
}
