package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graph"
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

// tokenFunc returns an access token for a scope.
type tokenFunc func(ctx context.Context, scope string) (string, error)

// storeOptions tune openStore.
type storeOptions struct {
	noSync      bool          // bbolt: no fsync (tests and benchmarks only)
	lockTimeout time.Duration // bbolt: the wait for the file lock; 0: 1s
	// azureAuth is INVITEBOT_DB_AZURE_AUTH: the password of every new
	// PostgreSQL connection is a Microsoft Entra access token from the
	// credential entra returns (Graph's). entra is called once, when the
	// store is PostgreSQL.
	azureAuth bool
	entra     func() (tokenFunc, error)
}

// openStore opens db (INVITEBOT_DB): a PostgreSQL database when it is a
// postgres:// URL (the schema is migrated), a bbolt file otherwise. Every
// command opens its stores here, so INVITEBOT_DB_AZURE_AUTH applies to
// each alike. Its errors name db with any password masked.
func openStore(ctx context.Context, db string, o storeOptions) (backend, error) {
	if !config.IsPostgresURL(db) {
		s, err := store.Open(db, store.Options{NoSync: o.noSync, LockTimeout: o.lockTimeout})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	name := config.RedactDB(db)
	var opts pgstore.Options
	if o.azureAuth {
		if o.entra == nil {
			return nil, fmt.Errorf("%s: INVITEBOT_DB_AZURE_AUTH needs the Microsoft Entra credential (AZURE_*)", name)
		}
		token, err := o.entra()
		if err != nil {
			return nil, fmt.Errorf("%s: INVITEBOT_DB_AZURE_AUTH: the Microsoft Entra credential: %w", name, err)
		}
		opts.Password = func(ctx context.Context) (string, error) { return token(ctx, pgEntraScope) }
	}
	s, err := pgstore.Open(ctx, db, opts)
	var pe *pgconn.PgError
	if o.azureAuth && errors.As(err, &pe) && pe.Code == pgInvalidPassword {
		return nil, fmt.Errorf("%s: the server refused the Microsoft Entra access token as the password (INVITEBOT_DB_AZURE_AUTH): "+
			"check that the user in INVITEBOT_DB is the role made for this app's identity (pgaadauth_create_principal) and that the server "+
			"accepts Microsoft Entra authentication from the app's tenant (its log says why it refused): %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// pgInvalidPassword is SQLSTATE invalid_password: the server refused the
// password (Azure: the access token).
const pgInvalidPassword = "28P01"

// storeEnv returns the storeOptions of a command that opens stores
// without the rest of serve's configuration (store copy, audit export):
// INVITEBOT_DB_AZURE_AUTH and, when it is on, the Entra credential made
// from AZURE_* as serve makes it.
func storeEnv(getenv func(string) string, d deps) (storeOptions, error) {
	cfg, err := config.LoadStore(getenv)
	if err != nil {
		return storeOptions{}, err
	}
	// One credential (and its token cache) for every store the command opens.
	return storeOptions{azureAuth: cfg.DBAzureAuth, entra: sync.OnceValues(func() (tokenFunc, error) {
		dir, err := graph.New(entraConfig(cfg, d))
		if err != nil {
			return nil, err
		}
		return dir.TokenFor, nil
	})}, nil
}

// entraConfig is the Graph client's configuration of the credential: the
// Entra credential cfg names (d's for tests).
func entraConfig(cfg *config.Config, d deps) graph.Config {
	return graph.Config{
		TenantID: cfg.TenantID, ClientID: cfg.ClientID, ManagedIdentity: cfg.ManagedIdentity,
		ClientSecret: cfg.ClientSecret.Reveal(), CertificatePath: cfg.CertificatePath, CertificatePassword: cfg.CertificatePassword.Reveal(),
		Credential: d.credential, AuthorityHost: cfg.AuthorityHost, BaseURL: cfg.GraphBaseURL, AuthHTTPClient: d.authHTTP,
	}
}
