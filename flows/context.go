package flows

import "context"

type ctxKey int

const invitationKey ctxKey = 0

// WithInvitationID returns ctx carrying an invitation's ID. The Service
// logs an invitation's background work with such a context, so a log
// handler can add the ID to every line (see bot.LogHandler).
func WithInvitationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, invitationKey, id)
}

// InvitationID returns the invitation ID ctx carries, or "".
func InvitationID(ctx context.Context) string {
	id, _ := ctx.Value(invitationKey).(string)
	return id
}
