// Package graph implements flows.Directory on msgraph-sdk-go and azidentity.
//
// Retries: the SDK's retry handler is switched off for every call. It
// would re-POST invitations on 429/503/504 (a second email, a reset
// budget) and it truncates fractional Retry-After values. flows owns retries
// instead, with bounded budgets, exact Retry-After and the knowledge of
// which POSTs are safe to repeat.
//
// Auth: the Graph base URL's host is added to the auth provider's allowed
// hosts; without it kiota silently sends no Authorization header.
package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	azauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/invitebot/invitebot/flows"
)

// Scope is the app-only scope of Microsoft Graph (global service).
const Scope = "https://graph.microsoft.com/.default"

// nationalClouds are the Graph hosts of the national clouds, whose tokens
// are issued for their own host's scope.
var nationalClouds = []string{"graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}

// ScopeFor returns the token scope for a Graph base URL: the national
// cloud's own scope for its host, else the global Graph scope (which also
// serves proxies and emulators in front of it).
func ScopeFor(base *url.URL) string {
	if slices.Contains(nationalClouds, strings.ToLower(base.Hostname())) {
		return "https://" + strings.ToLower(base.Hostname()) + "/.default"
	}
	return Scope
}

// Config configures a Client.
type Config struct {
	TenantID, ClientID  string
	ClientSecret        string
	CertificatePath     string // PEM or PFX with the private key
	CertificatePassword string
	// ManagedIdentity selects Azure's managed identity when no secret or
	// certificate is set: ClientID, if set, names a user-assigned identity;
	// else the system-assigned one is used.
	ManagedIdentity bool
	// Credential, if set, is used as is (tests).
	Credential azcore.TokenCredential
	// AuthorityHost is the token authority; "" is the public cloud. Any
	// other host also disables instance discovery.
	AuthorityHost string
	// BaseURL is Graph's base URL including the version.
	BaseURL string
	// Transport carries Graph calls under the SDK's middleware; nil: default.
	Transport http.RoundTripper
	// AuthHTTPClient carries token requests; nil: azidentity's default.
	AuthHTTPClient *http.Client
	Logger         *slog.Logger
}

// Client is the Graph directory.
type Client struct {
	graph *msgraph.GraphServiceClient
	// asUser sends requests with the delegated token its context carries
	// (InviteAs), never the app's.
	asUser *msgraph.GraphServiceClient
	cred   azcore.TokenCredential
	base   *url.URL
	// useDomains is set once GET /organization was refused (403) and
	// GET /domains answered: the app holds Domain.Read.All only.
	useDomains atomic.Bool
}

var _ flows.Directory = (*Client)(nil)

// New builds a Client. It does not call Graph.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://graph.microsoft.com/v1.0"
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("graph base URL %q: not an absolute URL", cfg.BaseURL)
	}
	cred := cfg.Credential
	if cred == nil {
		if cred, err = credential(cfg); err != nil {
			return nil, err
		}
	}
	app, err := newServiceClient(cred, base, cfg.Transport)
	if err != nil {
		return nil, err
	}
	asUser, err := newServiceClient(userToken{}, base, cfg.Transport)
	if err != nil {
		return nil, err
	}
	return &Client{graph: app, asUser: asUser, cred: cred, base: base}, nil
}

// newServiceClient builds an SDK client on base that authenticates with
// cred, with the SDK's retries off.
func newServiceClient(cred azcore.TokenCredential, base *url.URL, transport http.RoundTripper) (*msgraph.GraphServiceClient, error) {
	auth, err := azauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{ScopeFor(base)},
		[]string{"graph.microsoft.com", base.Hostname()})
	if err != nil {
		return nil, fmt.Errorf("graph auth provider: %w", err)
	}
	noRetry := &khttp.RetryHandlerOptions{ShouldRetry: func(time.Duration, int, *http.Request, *http.Response) bool { return false }}
	kiota, err := khttp.GetDefaultMiddlewaresWithOptions(noRetry)
	if err != nil {
		return nil, err
	}
	opts := msgraph.GetDefaultClientOptions()
	mw := append(msgraphcore.GetDefaultMiddlewaresWithOptions(&opts)[:2:2], kiota...)
	parent := transport
	if parent == nil {
		parent = khttp.GetDefaultTransport()
	}
	httpClient := &http.Client{Transport: khttp.NewCustomTransportWithParentTransport(parent, mw...), Timeout: 100 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	adapter, err := msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, httpClient)
	if err != nil {
		return nil, fmt.Errorf("graph adapter: %w", err)
	}
	adapter.SetBaseUrl(base.String())
	return msgraph.NewGraphServiceClient(adapter), nil
}

func credential(cfg Config) (azcore.TokenCredential, error) {
	co := azcore.ClientOptions{}
	if cfg.AuthHTTPClient != nil {
		co.Transport = cfg.AuthHTTPClient
	}
	discovery := false
	if cfg.AuthorityHost != "" {
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: strings.TrimSuffix(cfg.AuthorityHost, "/") + "/"}
		discovery = !strings.Contains(cfg.AuthorityHost, "login.microsoftonline.com")
	}
	switch {
	case cfg.ClientSecret != "":
		return azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: discovery})
	case cfg.CertificatePath != "":
		data, err := os.ReadFile(cfg.CertificatePath)
		if err != nil {
			return nil, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH: %w", err)
		}
		certs, key, err := azidentity.ParseCertificates(data, []byte(cfg.CertificatePassword))
		if err != nil {
			return nil, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH: %w", err)
		}
		return azidentity.NewClientCertificateCredential(cfg.TenantID, cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: discovery})
	case cfg.ManagedIdentity:
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if cfg.ClientID != "" {
			o.ID = azidentity.ClientID(cfg.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(o)
	default:
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, TenantID: cfg.TenantID, ClientID: cfg.ClientID, DisableInstanceDiscovery: discovery})
	}
}

// Token returns an app token for Graph (for diagnostics; never log it).
func (c *Client) Token(ctx context.Context) (string, error) {
	return c.TokenFor(ctx, ScopeFor(c.base))
}

// TokenFor returns an access token for scope from the credential Graph
// uses, such as Azure Database for PostgreSQL's (never log it). azidentity
// caches it until shortly before it expires.
func (c *Client) TokenFor(ctx context.Context, scope string) (string, error) {
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	return tok.Token, err
}

// translate turns an SDK error into a *flows.DirectoryError. It never
// calls ODataError.Error(), which panics on bodies without a message.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	de := &flows.DirectoryError{Op: op}
	var oe *odataerrors.ODataError
	var ae *abstractions.ApiError
	switch {
	case errors.As(err, &oe):
		de.Status = oe.ResponseStatusCode
		de.RetryAfter = retryAfter(oe.ResponseHeaders)
		if main := oe.GetErrorEscaped(); main != nil {
			if p := main.GetCode(); p != nil {
				de.Code = *p
			}
			if p := main.GetMessage(); p != nil {
				de.Message = *p
			}
		}
	case errors.As(err, &ae):
		de.Status = ae.ResponseStatusCode
		de.RetryAfter = retryAfter(ae.ResponseHeaders)
	case isCredentialRejected(err):
		// The token service refused the app's credential: retrying cannot
		// help, and "Graph was unavailable" would mislead.
		de.Status, de.Code = http.StatusUnauthorized, flows.CodeCredentialRejected
		de.Message = "the token service rejected invitebot's credential (wrong or expired client secret or certificate)"
		if code := aadstsCode.FindString(err.Error()); code != "" {
			de.Message += ": " + code
		}
	default:
		de.Err = err // transport error, timeout: status 0
	}
	return de
}

// aadstsCode finds the token service's error code (e.g. AADSTS7000215).
var aadstsCode = regexp.MustCompile(`AADSTS[0-9]+`)

// isCredentialRejected reports whether err is the token service refusing
// the credential (an AADSTS error answer), as opposed to not answering.
func isCredentialRejected(err error) bool {
	var afe *azidentity.AuthenticationFailedError
	return errors.As(err, &afe) && afe.RawResponse != nil && afe.RawResponse.StatusCode >= 400 && afe.RawResponse.StatusCode < 500
}

// retryAfter parses Retry-After as (fractional) seconds or an HTTP date.
func retryAfter(h *abstractions.ResponseHeaders) time.Duration {
	if h == nil {
		return 0
	}
	for _, k := range []string{"Retry-After", "retry-after"} {
		for _, v := range h.Get(k) {
			if s, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && s >= 0 {
				return time.Duration(s * float64(time.Second))
			}
			if t, err := http.ParseTime(v); err == nil {
				return max(time.Until(t), 0)
			}
		}
	}
	return 0
}
