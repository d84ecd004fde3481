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
		SocketModeEnabled bool   `yaml:"socket_mode_enabled"`
		OrgDeployEnabled  bool   `yaml:"org_deploy_enabled"`
		FunctionRuntime   string `yaml:"function_runtime"`
	} `yaml:"settings"`
	// Functions are the Workflow Builder steps, by callback ID.
	Functions map[string]Function `yaml:"functions"`
}

// Function is a Workflow Builder step (a custom function run by the app).
type Function struct {
	Title            string           `yaml:"title"`
	Description      string           `yaml:"description"`
	InputParameters  map[string]Param `yaml:"input_parameters"`
	OutputParameters map[string]Param `yaml:"output_parameters"`
}

// Param is a function's input or output parameter.
type Param struct {
	Type        string `yaml:"type"`
	Name        string `yaml:"name"`
	Title       string `yaml:"title"`
	Description string `yaml:"description"`
	IsRequired  bool   `yaml:"is_required"`
}

// Parse parses the embedded manifest.
func Parse() (*Manifest, error) {
	var m Manifest
	if err := yaml.Unmarshal(YAML, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}
