package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"

	"github.com/invitebot/invitebot/internal/config"
)

func serveCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: invitebot serve

Runs invitebot. Configuration comes only from the environment (secrets are
never flags). With SLACK_APP_TOKEN set it connects over Socket Mode and needs
no public URL; otherwise Slack sends requests to POST /slack/commands,
/slack/interactions and /slack/events on INVITEBOT_ADDR. GET /healthz and
GET /metrics (Prometheus) are served in both modes.

Environment:
`)
		for _, e := range config.Env {
			fmt.Fprintf(stderr, "  %-34s %s\n", e[0], e[1])
		}
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg, stderr)
	a, err := newApp(cfg, log, deps{})
	if err != nil {
		return err
	}
	defer a.Close()
	signal.Notify(a.reload, syscall.SIGHUP) // re-read INVITEBOT_CONFIG
	defer signal.Stop(a.reload)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("INVITEBOT_ADDR: %w", err)
	}
	return a.serve(ctx, ln)
}
