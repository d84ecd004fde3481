package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/invitebot/invitebot/internal/config"
)

const policyUsage = `Usage:
  invitebot policy check FILE   validate a policy file (INVITEBOT_CONFIG) offline,
                                with the same checks as start-up and SIGHUP
  invitebot policy example      print a complete, commented policy file
`

// policyCmd is `invitebot policy`.
func policyCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 1 && fs.Arg(0) == "example":
		_, err := stdout.Write(config.Example)
		return err
	case fs.NArg() == 2 && fs.Arg(0) == "check":
		p, err := config.LoadPolicy(fs.Arg(1))
		if err != nil {
			return err
		}
		for _, w := range p.Warnings {
			fmt.Fprintf(stderr, "%s: warning: %s\n", fs.Arg(1), w)
		}
		fp := p.Flows(config.DefaultRedirectURL)
		inviters := "everyone"
		if len(fp.Inviters) > 0 {
			inviters = fmt.Sprintf("%d people and the admins", len(fp.Inviters))
		}
		fmt.Fprintf(stdout, "%s: ok: %d admin(s); inviters: %s; %d group(s); %d domain rule(s), other domains: %s; approvals: %s\n",
			fs.Arg(1), len(fp.Admins), inviters, len(fp.Groups), len(fp.Domains.Rules), orDefault(string(fp.Domains.Default), "allow"), approvalsSummary(fp.ApprovalChannel, fp.HasApprovals()))
		return nil
	}
	fs.Usage()
	return errors.New("policy: expected `check FILE` or `example`")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func approvalsSummary(channel string, any bool) string {
	switch {
	case !any:
		return "none configured"
	case channel != "":
		return "posted to " + channel
	}
	return "DMed to the approvers"
}
