package bot

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

var _ flows.People = (*Bot)(nil)

// What is per person, not per invitation, is read from Slack once and
// reused for a while:
//   - a person's profile (users.info: their name for the invitation text,
//     their email for the sponsor) for profileTTL; a user_change event
//     drops it at once;
//   - whether an invitee's address is a Slack user (users.lookupByEmail:
//     the Slack Connect button), found or not, for inviteeTTL.
const (
	profileTTL = 10 * time.Minute
	inviteeTTL = 10 * time.Minute
)

// ttlCache keeps values for ttl; expired entries are swept on each put,
// so it holds only what was used lately.
type ttlCache[V any] struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v  V
	at time.Time
}

func (c *ttlCache[V]) get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || now.Sub(e.at) >= c.ttl {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(key string, v V, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]ttlEntry[V]{}
	}
	for k, e := range c.m {
		if now.Sub(e.at) >= c.ttl {
			delete(c.m, k)
		}
	}
	c.m[key] = ttlEntry[V]{v: v, at: now}
}

func (c *ttlCache[V]) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

// profile is the part of a Slack user's profile invitebot uses.
type profile struct{ Name, Email string }

// UserGroupMembers returns the members of a Slack user group (S…); needs
// usergroups:read.
func (b *Bot) UserGroupMembers(ctx context.Context, id string) ([]string, error) {
	return b.api.GetUserGroupMembersContext(ctx, id)
}

// Email implements flows.People: the Slack user's profile email
// (users.info; needs users:read.email), cached for profileTTL.
func (b *Bot) Email(ctx context.Context, userID string) (string, error) {
	p, err := b.profile(ctx, userID)
	return p.Email, err
}

// profile returns userID's profile, from the cache if it is fresh.
func (b *Bot) profile(ctx context.Context, userID string) (profile, error) {
	now := time.Now()
	if p, ok := b.profiles.get(userID, now); ok {
		return p, nil
	}
	u, err := b.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		return profile{}, err
	}
	p := profile{Name: firstNonEmpty(u.RealName, u.Profile.RealName, u.Name), Email: u.Profile.Email}
	b.profiles.put(userID, p, now)
	return p, nil
}

// inviteeInSlack returns the Slack user with email (e.g. a Slack Connect
// partner), or nil if there is none; answers are cached for inviteeTTL.
func (b *Bot) inviteeInSlack(ctx context.Context, email string) (*slack.User, error) {
	key, now := strings.ToLower(email), time.Now()
	if u, ok := b.invitees.get(key, now); ok {
		return u, nil
	}
	u, err := b.api.GetUserByEmailContext(ctx, email)
	var se slack.SlackErrorResponse
	if errors.As(err, &se) && se.Err == "users_not_found" {
		u, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	b.invitees.put(key, u, now)
	return u, nil
}
