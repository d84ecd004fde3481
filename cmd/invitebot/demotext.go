//go:build !noemulators

package main

import (
	"regexp"
	"strings"
)

// emoji are the Slack emoji codes invitebot's messages use, as Slack shows
// them.
var emoji = strings.NewReplacer(
	":white_check_mark:", "✅", ":x:", "❌", ":hourglass:", "⌛", ":hourglass_flowing_sand:", "⏳",
	":no_entry:", "⛔", ":wastebasket:", "🗑", ":tada:", "🎉", ":raising_hand:", "🙋",
	":warning:", "⚠️", ":arrows_counterclockwise:", "🔄",
)

var (
	mrkdwnLink    = regexp.MustCompile(`<([^<>|]+)\|([^<>]*)>`)    // <url|text>
	mrkdwnBare    = regexp.MustCompile(`<([^<>|]+)>`)              // <url>, <@U…>, <!here>
	mrkdwnBold    = regexp.MustCompile(`\*([^*\n]+)\*`)            // *bold*
	mrkdwnCode    = regexp.MustCompile("`([^`\n]+)`")              // `code`
	longURL       = regexp.MustCompile(`https?://[^\s<>|)"]{48,}`) // shortened to its host and path
	htmlEntityRep = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")
)

// readable renders Slack mrkdwn as a person reads it in Slack: emoji codes
// as emoji, *bold* and `code` without their marks, code blocks without
// their fences, a link as its text (its address is not repeated), and a
// long address cut after its path.
func readable(s string) string {
	s = strings.ReplaceAll(s, "```", "")
	s = emoji.Replace(s)
	s = mrkdwnLink.ReplaceAllString(s, "$2")
	s = mrkdwnBare.ReplaceAllStringFunc(s, func(m string) string {
		inner := m[1 : len(m)-1]
		switch {
		case strings.HasPrefix(inner, "@"), strings.HasPrefix(inner, "#"):
			return inner
		case strings.HasPrefix(inner, "!"):
			return "@" + strings.TrimPrefix(inner, "!")
		}
		return inner
	})
	s = mrkdwnBold.ReplaceAllString(s, "$1")
	s = mrkdwnCode.ReplaceAllString(s, "$1")
	s = longURL.ReplaceAllStringFunc(s, shortURL)
	return htmlEntityRep.Replace(s)
}

// shortURL keeps an address's scheme, host and path, and marks what it
// leaves out with "…".
func shortURL(u string) string {
	rest := u[strings.Index(u, "://")+3:]
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return u[:len(u)-len(rest)+i] + "?…"
	}
	return u
}
