package main

import (
	"maps"
	"slices"

	"github.com/invitebot/invitebot/internal/slackfake"
	"github.com/invitebot/invitebot/manifest"
)

// defineSteps declares the manifest's Workflow Builder steps to the Slack
// fake, as creating the app from manifest/manifest.yaml does.
func defineSteps(s *slackfake.Server) error {
	m, err := manifest.Parse()
	if err != nil {
		return err
	}
	params := func(ps map[string]manifest.Param) []slackfake.Param {
		var out []slackfake.Param
		for _, k := range slices.Sorted(maps.Keys(ps)) {
			p := ps[k]
			out = append(out, slackfake.Param{Name: p.Name, Type: p.Type, Title: p.Title, Required: p.IsRequired})
		}
		return out
	}
	for id, f := range m.Functions {
		s.DefineFunction(slackfake.Function{CallbackID: id, Title: f.Title, Inputs: params(f.InputParameters), Outputs: params(f.OutputParameters)})
	}
	return nil
}
