package config_test

import (
	"reflect"
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
)

// FuzzParsePolicy: ParsePolicy never panics, is deterministic, and a
// policy it accepts converts to flows' terms and decides without panicking.
func FuzzParsePolicy(f *testing.F) {
	f.Add(config.Example)
	for _, s := range []string{
		"", "admins: [U0123ABCD]\n", "groups: [\n", "admins: U0123ABCD\n", "- a\n- b\n", "&a [*a]\n",
		"domains:\n  default: deny\n  rules:\n    - {domain: '*.fabrikam.com', action: allow}\n    - {domain: fabrikam.com, action: deny, reason: no}\n",
		"expiry: {default: 90d, remind_before: 7d, action: disable}\nreminders: {pending_after: \"0\"}\n",
		"approvals: {approvers: [S0GROUP], channel: C0APPROVALS, expire_after: 1h}\n",
		"templates:\n  invitation: \"{{.GuestName}} {{.Nope\"\n",
		"unknown: 1\nother: {a: b}\n", "---\nadmins: []\n---\nadmins: [bad]\n", "? [a]\n: b\n",
	} {
		f.Add([]byte(s))
	}
	req := flows.Request{Email: "bob@sub.fabrikam.com", Groups: []string{"11111111-2222-3333-4444-555555555555"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := config.ParsePolicy(data)
		p2, err2 := config.ParsePolicy(data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("ParsePolicy is not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("ParsePolicy is not deterministic:\n%+v\n%+v", p, p2)
		}
		if _, err := p.InvitationTemplate(); err != nil {
			t.Fatalf("accepted a policy whose template does not parse: %v", err)
		}
		fp := p.Flows("https://x.example")
		if !reflect.DeepEqual(fp, p2.Flows("https://x.example")) {
			t.Fatal("Flows is not deterministic")
		}
		for _, who := range []string{"U0123ABCD", "UNOBODY"} {
			d := fp.Decide(req, who)
			if d2 := fp.Decide(req, who); !reflect.DeepEqual(d, d2) {
				t.Fatalf("Decide is not deterministic: %+v / %+v", d, d2)
			}
		}
		_ = fp.WithDomainDefaults(req).Normalize(fp)
		_ = fp.ExpandUserGroups(map[string][]string{"S0GROUP": {"U1"}})
		_ = fp.UserGroups()
		_ = p.ApprovalTTL()
	})
}
