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
	"strconv"
	"strings"
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

// Scope is the app-only scope of Microsoft Graph.
const Scope = "https://graph.microsoft.com/.default"

// Config configures a Client.
type Config struct {
	TenantID, ClientID  string
	ClientSecret        string
	CertificatePath     string // PEM or PFX with the private key
	CertificatePassword string
	// Credential, if set, is used as is (workload or managed identity, tests).
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
	cred  azcore.TokenCredential
	base  *url.URL
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
	auth, err := azauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{Scope},
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
	parent := cfg.Transport
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
	return &Client{graph: msgraph.NewGraphServiceClient(adapter), cred: cred, base: base}, nil
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
	default:
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, TenantID: cfg.TenantID, ClientID: cfg.ClientID, DisableInstanceDiscovery: discovery})
	}
}

// Token returns an app token for Graph (for diagnostics; never log it).
func (c *Client) Token(ctx context.Context) (string, error) {
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
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
	default:
		de.Err = err // transport error, timeout: status 0
	}
	return de
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
