package bot

import "strings"

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Escape makes untrusted text safe inside mrkdwn: Slack parses only &, <
// and > as control characters, so a display name like "<!channel>" cannot
// notify anyone or become a link once escaped.
func Escape(s string) string { return escaper.Replace(s) }
