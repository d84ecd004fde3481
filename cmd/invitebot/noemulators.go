//go:build noemulators

package main

import (
	"context"
	"errors"
	"io"
)

// errNoEmulators is demo's and load's answer in a build without the
// emulators (go build -tags noemulators).
var errNoEmulators = errors.New("this invitebot was built without the emulators (-tags noemulators): demo and load are not in it")

func demoCmd(context.Context, []string, io.Writer, io.Writer) error { return errNoEmulators }

func loadCmd(context.Context, []string, io.Writer, io.Writer) error { return errNoEmulators }
