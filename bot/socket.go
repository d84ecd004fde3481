package bot

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// RunSocketMode serves Slack over Socket Mode until ctx is done: the same
// commands and interactions as HTTP mode, acknowledged over the socket. The
// app-level token authenticates the socket, so there is no signature.
// Each envelope is handled on its own goroutine, as each HTTP request is:
// a slow views.open for one user must not hold up another's ack. It
// returns when ctx is done, once the handlers in flight have finished.
func (b *Bot) RunSocketMode(ctx context.Context, client *socketmode.Client) error {
	errc := make(chan error, 1)
	go func() { errc <- client.RunContext(ctx) }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case evt, ok := <-client.Events:
			if !ok {
				return errors.New("socket mode: event channel closed")
			}
			wg.Go(func() { b.socketEvent(ctx, client, evt) })
		}
	}
}

// socketEvent handles one Socket Mode event; an envelope's ID is its
// request ID in the log.
func (b *Bot) socketEvent(ctx context.Context, client *socketmode.Client, evt socketmode.Event) {
	if evt.Request != nil {
		ctx = WithRequestID(ctx, evt.Request.EnvelopeID)
		defer func(began time.Time) {
			b.log.DebugContext(ctx, "slack request", "type", evt.Type, "took", time.Since(began).Round(time.Microsecond))
		}(time.Now())
	}
	var payload any
	switch evt.Type {
	case socketmode.EventTypeConnected:
		b.log.InfoContext(ctx, "socket mode connected")
		return
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth:
		b.log.WarnContext(ctx, "socket mode connection problem", "type", evt.Type)
		return
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok {
			break
		}
		payload = b.command(ctx, cmd)
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok {
			break
		}
		payload = b.interaction(ctx, cb)
	case socketmode.EventTypeEventsAPI:
		if evt.Request != nil && b.event(ctx, evt.Request.Payload) != nil {
			return // not acknowledged: Slack sends it again
		}
	default:
		return
	}
	if evt.Request == nil {
		return
	}
	if payload != nil {
		// Socket Mode frames over 20 KB are dropped by Slack; our views
		// are far smaller, but say so if one ever is not.
		if raw, err := json.Marshal(payload); err == nil && len(raw) >= 20<<10 {
			b.log.ErrorContext(ctx, "socket mode ack too large", "bytes", len(raw))
		}
	}
	if err := client.AckCtx(ctx, evt.Request.EnvelopeID, payload); err != nil {
		b.log.WarnContext(ctx, "socket mode ack", "err", err)
	}
}
