package bot

import (
	"strings"
	"testing"
	"unicode"
)

var unescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// checkEscaped fails t if s has a < or > or an & that does not start one
// of the three entities Escape writes.
func checkEscaped(t *testing.T, in, s string) {
	t.Helper()
	if strings.ContainsAny(s, "<>") {
		t.Fatalf("Escape(%q) = %q keeps < or >", in, s)
	}
	for i := strings.IndexByte(s, '&'); i >= 0; {
		rest := s[i:]
		if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
			t.Fatalf("Escape(%q) = %q has a bare & at %d", in, s, i)
		}
		j := strings.IndexByte(s[i+1:], '&')
		if j < 0 {
			break
		}
		i += j + 1
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "<!channel>", "<@U123|boss>", "<https://evil|click>", "&amp;", "&lt;!here&gt;",
		"&&<<>>", "<#C123>", "<!subteam^S123>", "\xff<\x00>", "a&b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Escape(s)
		checkEscaped(t, s, out)
		if got := unescaper.Replace(out); got != s {
			t.Fatalf("Escape(%q) = %q does not round-trip (%q)", s, out, got)
		}
		if Escape(s) != out {
			t.Fatalf("Escape(%q) is not deterministic", s)
		}
	})
}

func FuzzParseCommandText(f *testing.F) {
	for _, s := range []string{"", "   ", "help", "bob@contoso.com", "bob@contoso.com Bob  Smith",
		"<mailto:bob@contoso.com|bob@contoso.com> Bob", "<bob@contoso.com>", "Bob Smith", "<mailto:a@b|>",
		"@", "<@U123> <!channel>", "a@b\u00a0c@d", "|@|", "mailto:mailto:a@b", "a@b\u2028Bob", "\xff@\xfe x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p := ParseCommandText(text)
		if strings.IndexFunc(p.Email, unicode.IsSpace) >= 0 {
			t.Fatalf("ParseCommandText(%q).Email = %q has whitespace", text, p.Email)
		}
		if p.DisplayName != strings.TrimSpace(p.DisplayName) {
			t.Fatalf("ParseCommandText(%q).DisplayName = %q is not trimmed", text, p.DisplayName)
		}
		if p.Email == "" && p.DisplayName == "" && strings.TrimSpace(text) != "" && !strings.Contains(text, "@") {
			t.Fatalf("ParseCommandText(%q) lost the text", text)
		}
		// The prefill goes into the dialog's inputs; the dialog must render.
		_ = InviteModal(p, fuzzPolicy("Portal"), true)
	})
}
