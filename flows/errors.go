package flows

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

var (
	// ErrNotFound is returned when a record or directory object does not
	// exist (for the directory, possibly not yet: see replication delay).
	ErrNotFound = errors.New("not found")
	// ErrForbidden is returned when the directory refuses the app (Graph 403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotAuthorized is returned when a Slack user may not do what they asked.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrDuplicate is returned by Store.CreateInvitation when the same
	// origin (Origin.UniqueKey: a Slack view, a bulk row's attempt, a
	// workflow step's execution) already submitted an invitation; the
	// existing one is returned.
	ErrDuplicate = errors.New("duplicate submission")
	// ErrInFlight is returned by Store.CreateInvitation (and wrapped by
	// Store.UpdateInvitation) when another unfinished invitation exists for
	// the same address.
	ErrInFlight = errors.New("invitation already in progress")
	// ErrUndeliverable wraps a Notifier error that retrying cannot fix
	// (e.g. the inviter's Slack account was deactivated): the notice is
	// dropped, and the drop recorded, instead of retried.
	ErrUndeliverable = errors.New("notice cannot be delivered")
	// ErrWrongState is returned when an action does not apply to the
	// invitation's current state (e.g. a second pick).
	ErrWrongState = errors.New("invitation is not in the expected state")
)

// Field names a field of the invitation request. The values equal the
// modal's block IDs, which are part of invitebot's contract.
type Field string

// The request fields.
const (
	FieldEmail       Field = "email"
	FieldDisplayName Field = "display_name"
	FieldRedirectURL Field = "redirect_url"
	FieldDelivery    Field = "delivery"
	FieldMessage     Field = "message"
	FieldCC          Field = "cc"
	FieldUserType    Field = "user_type"
	FieldGroups      Field = "groups"
	FieldGivenName   Field = "given_name"
	FieldSurname     Field = "surname"
	FieldCompanyName Field = "company_name"
	FieldJobTitle    Field = "job_title"
	// FieldConvertFrom is the internal account of a conversion to B2B.
	FieldConvertFrom Field = "account"
	// FieldJustification is why the guest is needed (for approvals).
	FieldJustification Field = "justification"
	// FieldExpiresIn is how long the guest's access lasts.
	FieldExpiresIn Field = "expires_in"
)

// FieldErrors maps request fields to what is wrong with them. It is shown to
// the inviter next to each field.
type FieldErrors map[Field]string

// Error implements error.
func (e FieldErrors) Error() string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("invalid request:")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s: %s;", k, e[Field(k)])
	}
	return strings.TrimSuffix(b.String(), ";")
}

// CodeCredentialRejected is the DirectoryError code the adapter uses when
// the token service refused the app's credential.
const CodeCredentialRejected = "credential_rejected"

// DirectoryError is a failed directory call, translated by the adapter from
// Graph's error (status, error.code, error.message, Retry-After). Status 0
// means the request did not get an HTTP answer (timeout, connection reset).
type DirectoryError struct {
	Op         string // e.g. "invite", "add group member"
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // from Retry-After; 0 if absent
	Err        error         // the underlying transport error, if any
}

// Error implements error. It never includes tokens or redeem links: the
// adapter only fills it from Graph's error body.
func (e *DirectoryError) Error() string {
	switch {
	case e.Status == 0 && e.Err != nil:
		return fmt.Sprintf("%s: %v", e.Op, e.Err)
	case e.Code != "":
		return fmt.Sprintf("%s: graph %d %s: %s", e.Op, e.Status, e.Code, e.Message)
	default:
		return fmt.Sprintf("%s: graph %d", e.Op, e.Status)
	}
}

// Unwrap returns the transport error.
func (e *DirectoryError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) and ErrForbidden work on 404 and 403.
func (e *DirectoryError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	}
	return false
}

// Throttled reports whether Graph asked us to slow down (429).
func (e *DirectoryError) Throttled() bool { return e.Status == http.StatusTooManyRequests }

// Temporary reports whether the same request may succeed later: throttling,
// server errors and transport failures.
func (e *DirectoryError) Temporary() bool {
	return e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Ambiguous reports whether the request may have taken effect even though
// it failed: the answer was lost (transport error) or the server failed
// after accepting it (5xx). A 429 is never ambiguous: Graph rejects
// throttled requests before doing anything.
func (e *DirectoryError) Ambiguous() bool {
	return e.Status == 0 || e.Status >= 500
}

// failureFor classifies err for the record. step is the state that failed.
func failureFor(step State, err error) *Failure {
	f := &Failure{Code: FailInternal, Step: step}
	var de *DirectoryError
	if errors.As(err, &de) {
		f.Op = de.Op
	}
	var refused *InviterRefusedError
	switch {
	case errors.As(err, &refused):
		f.Code, f.Message = FailInviterRefused, de.Message
	case errors.Is(err, ErrSignInNeeded):
		f.Code, f.Retryable = FailNotConnected, true
		f.Message = "connect your Microsoft account (/invite-guest connect), then try again"
	case errors.As(err, &de) && de.Code == CodeCredentialRejected:
		f.Code = FailCredential
	case errors.As(err, &de) && de.Status == http.StatusForbidden,
		errors.As(err, &de) && de.Status == http.StatusUnauthorized:
		f.Code = FailForbidden
		f.Message = de.Message
	case errors.As(err, &de) && de.Throttled():
		f.Code, f.Retryable = FailThrottled, true
	case errors.As(err, &de) && de.Temporary():
		f.Code, f.Retryable = FailUnavailable, true
	case errors.As(err, &de) && de.Status == http.StatusNotFound:
		f.Code, f.Retryable = FailNotFound, true
		f.Message = de.Message
	case errors.As(err, &de):
		f.Code = FailRejected
		f.Message = de.Message
	}
	return f
}
