// Package manifest embeds the Slack app manifest (manifest.yaml), the source
// of truth for the Slack app's command, scopes and request URLs. A test
// checks it against what the bot serves.
package manifest

import (
	_ "embed"
	"fmt"

	"gopkg.in/yaml.v3"
)

// YAML is the manifest as shipped.
//
//go:embed manifest.yaml
var YAML []byte

// Manifest is the part of the manifest invitebot depends on.
type Manifest struct {
	Features struct {
		SlashCommands []struct {
			Command string `yaml:"command"`
			URL     string `yaml:"url"`
		} `yaml:"slash_commands"`
		AppHome struct {
			HomeTabEnabled bool `yaml:"home_tab_enabled"`
		} `yaml:"app_home"`
	} `yaml:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		EventSubscriptions struct {
			RequestURL string   `yaml:"request_url"`
			BotEvents  []string `yaml:"bot_events"`
		} `yaml:"event_subscriptions"`
		Interactivity struct {
			IsEnabled  bool   `yaml:"is_enabled"`
			RequestURL string `yaml:"request_url"`
		} `yaml:"interactivity"`
		SocketModeEnabled bool `yaml:"socket_mode_enabled"`
	} `yaml:"settings"`
}

// Parse parses the embedded manifest.
func Parse() (*Manifest, error) {
	var m Manifest
	if err := yaml.Unmarshal(YAML, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}
