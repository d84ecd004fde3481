package main

import (
	"context"
	"fmt"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/store"
)

// pgEntraScope is the scope of Microsoft Entra access tokens that Azure
// Database for PostgreSQL accepts as passwords.
const pgEntraScope = "https://ossrdbms-aad.database.windows.net/.default"

// backend is the store invitebot runs on: bbolt or PostgreSQL.
type backend interface {
	flows.Store
	Close() error
}

var (
	_ backend = (*store.DB)(nil)
	_ backend = (*pgstore.DB)(nil)
)

// storeOptions tune openStore.
type storeOptions struct {
	noSync      bool          // bbolt: no fsync (tests and benchmarks only)
	lockTimeout time.Duration // bbolt: the wait for the file lock; 0: 1s
	// token returns an access token for scope: with INVITEBOT_DB_AZURE_AUTH,
	// the PostgreSQL password (the Graph credential's TokenFor).
	token func(ctx context.Context, scope string) (string, error)
}

// openStore opens db (INVITEBOT_DB): a PostgreSQL database when it is a
// postgres:// URL (the schema is migrated), a bbolt file otherwise. Its
// errors name db with any password masked.
func openStore(ctx context.Context, db string, o storeOptions) (backend, error) {
	if !config.IsPostgresURL(db) {
		s, err := store.Open(db, store.Options{NoSync: o.noSync, LockTimeout: o.lockTimeout})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	var opts pgstore.Options
	if o.token != nil {
		opts.Password = func(ctx context.Context) (string, error) { return o.token(ctx, pgEntraScope) }
	}
	s, err := pgstore.Open(ctx, db, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.RedactDB(db), err)
	}
	return s, nil
}
