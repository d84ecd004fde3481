package config_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/internal/config"
)

var (
	keyA = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	keyB = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))
)

func delegatedEnv() map[string]string {
	e := validEnv()
	e["INVITEBOT_INVITE_AS"] = "inviter"
	e["INVITEBOT_PUBLIC_URL"] = "https://invitebot.contoso.com/"
	e["INVITEBOT_TOKEN_KEY"] = keyA
	return e
}

func TestLoadInviteAs(t *testing.T) {
	c, err := config.Load(env(validEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.InviteAs != config.InviteAsApp || c.Delegated() || c.RedirectURI() != "" {
		t.Errorf("default: InviteAs %q, Delegated %v, RedirectURI %q", c.InviteAs, c.Delegated(), c.RedirectURI())
	}
	e := delegatedEnv()
	e["INVITEBOT_TOKEN_KEY_PREVIOUS"] = keyB
	c, err = config.Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.RedirectURI(), "https://invitebot.contoso.com/auth/callback"; got != want {
		t.Errorf("RedirectURI = %q, want %q", got, want)
	}
	cur, prev := c.TokenKeys()
	if !bytes.Equal(cur, bytes.Repeat([]byte{1}, 32)) || !bytes.Equal(prev, bytes.Repeat([]byte{0xfb}, 32)) {
		t.Errorf("TokenKeys = %x, %x", cur, prev)
	}
	if s := (c.TokenKey.String() + c.TokenKeyPrevious.String()); strings.Contains(s, keyA) || strings.Contains(s, keyB) {
		t.Error("token key printed")
	}
	e = delegatedEnv()
	e["INVITEBOT_PUBLIC_URL"] = "http://127.0.0.1:3000"
	if _, err := config.Load(env(e)); err != nil {
		t.Errorf("http on 127.0.0.1 refused: %v", err)
	}
}

func TestLoadInviteAsErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(map[string]string)
		want string
	}{
		{"UnknownMode", func(e map[string]string) { e["INVITEBOT_INVITE_AS"] = "user" }, "INVITEBOT_INVITE_AS: one of app, inviter, inviter_or_app"},
		{"NoPublicURL", func(e map[string]string) { delete(e, "INVITEBOT_PUBLIC_URL") }, "INVITEBOT_PUBLIC_URL: required with INVITEBOT_INVITE_AS=inviter"},
		{"HTTPPublicURL", func(e map[string]string) { e["INVITEBOT_PUBLIC_URL"] = "http://invitebot.contoso.com" }, "INVITEBOT_PUBLIC_URL: must be https://"},
		{"QueryPublicURL", func(e map[string]string) { e["INVITEBOT_PUBLIC_URL"] = "https://x.contoso.com/?a=1" }, "INVITEBOT_PUBLIC_URL: must not have a query"},
		{"RelativePublicURL", func(e map[string]string) { e["INVITEBOT_PUBLIC_URL"] = "invitebot.contoso.com" }, "INVITEBOT_PUBLIC_URL: not an absolute URL"},
		{"NoKey", func(e map[string]string) { delete(e, "INVITEBOT_TOKEN_KEY") }, "INVITEBOT_TOKEN_KEY: required with INVITEBOT_INVITE_AS=inviter"},
		{"KeyNotBase64", func(e map[string]string) { e["INVITEBOT_TOKEN_KEY"] = "not base64!" }, "INVITEBOT_TOKEN_KEY: not base64"},
		{"KeyTooShort", func(e map[string]string) {
			e["INVITEBOT_TOKEN_KEY"] = base64.StdEncoding.EncodeToString(make([]byte, 16))
		}, "INVITEBOT_TOKEN_KEY: 16 bytes; want 32"},
		{"PreviousBad", func(e map[string]string) { e["INVITEBOT_TOKEN_KEY_PREVIOUS"] = "abc" }, "INVITEBOT_TOKEN_KEY_PREVIOUS:"},
		{"PreviousSame", func(e map[string]string) { e["INVITEBOT_TOKEN_KEY_PREVIOUS"] = keyA }, "INVITEBOT_TOKEN_KEY_PREVIOUS: equals"},
		{"OrAppNeedsKey", func(e map[string]string) {
			e["INVITEBOT_INVITE_AS"] = "inviter_or_app"
			delete(e, "INVITEBOT_TOKEN_KEY")
		}, "INVITEBOT_TOKEN_KEY: required with INVITEBOT_INVITE_AS=inviter_or_app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := delegatedEnv()
			tt.edit(e)
			_, err := config.Load(env(e))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), keyA) {
				t.Error("error quotes the key")
			}
		})
	}
}
