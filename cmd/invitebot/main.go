// Command invitebot is a Slack app that invites external collaborators into
// a Microsoft Entra ID tenant as B2B guests.
//
//	invitebot serve    run the bot (configuration from the environment)
//	invitebot demo     run the whole flow against built-in emulators
//	invitebot load     measure Slack's 3-second deadlines against the emulators
//	invitebot policy   check a policy file, or print an example
//	invitebot audit    export the audit log as CSV
//	invitebot bulk     invite the rows of a CSV file
//	invitebot backup   a consistent copy of the bbolt store
//	invitebot version  the build's version and VCS revision
//	invitebot store    copy a store between bbolt and PostgreSQL
//	invitebot help     usage and the environment variables
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := exitCode(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode prints run's error and returns the process's exit status: 0 on
// success and for help asked with -h or --help, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintln(stderr, "invitebot:", err)
	return 1
}

// parseNoArgs parses a command's flags and refuses any argument beside
// them, showing the command's usage.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%s takes no arguments, got %q", fs.Name(), fs.Args())
	}
	return nil
}

const usage = `invitebot invites external collaborators into Microsoft Entra ID as B2B
guests from Slack (/invite-guest).

Usage:
  invitebot serve    run the bot; configuration comes from the environment
  invitebot demo     run the whole invitation flow against built-in emulators
                     of Slack and Microsoft Graph (no tenant, no Slack app needed)
  invitebot load     measure the slash command and submission acks under load,
                     against the same emulators
  invitebot policy   check a policy file offline, or print a commented example
  invitebot doctor   check the configuration against Slack and Entra, a line each
  invitebot audit    export the audit log as CSV (audit export [-since 720h] [-o FILE])
  invitebot bulk     invite the rows of a CSV file (bulk -as U0123ABCD guests.csv)
  invitebot backup   write a consistent copy of the store (backup FILE), also
                     while serve runs
  invitebot version  the version and VCS revision of this build
  invitebot store    copy a store between bbolt and PostgreSQL (store copy FROM TO)
  invitebot help     this text

Run "invitebot COMMAND -h" for a command's help.
`

// run is the whole program; main only adds signals and the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], getenv, stdout, stderr)
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	case "load":
		return loadCmd(ctx, args[1:], stdout, stderr)
	case "policy":
		return policyCmd(ctx, args[1:], stdout, stderr)
	case "doctor":
		return doctorCmd(ctx, args[1:], getenv, stdout, stderr)
	case "audit":
		return auditCmd(ctx, args[1:], getenv, stdout, stderr)
	case "bulk":
		return bulkCmd(ctx, args[1:], getenv, stdout, stderr)
	case "backup":
		return backupCmd(ctx, args[1:], getenv, stdout, stderr)
	case "version":
		return versionCmd(ctx, args[1:], stdout, stderr)
	case "store":
		return storeCmd(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
