package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/invitebot/invitebot/flows"
)

// userSelect is what Directory.User reads.
var userSelect = []string{"id", "displayName", "mail", "userPrincipalName", "userType", "externalUserState", "onPremisesUserPrincipalName"}

// stateSelect is what ExternalStates reads per user.
var stateSelect = []string{"id", "externalUserState", "externalUserStateChangeDateTime"}

// RemoveGroupMember implements flows.Directory: DELETE
// /groups/{gid}/members/{uid}/$ref. A 404 (not a member, or the user is
// gone) is success.
func (c *Client) RemoveGroupMember(ctx context.Context, groupID, userID string) error {
	err := translate("remove group member",
		c.graph.Groups().ByGroupId(groupID).Members().ByDirectoryObjectId(userID).Ref().Delete(ctx, nil))
	if errors.Is(err, flows.ErrNotFound) {
		return nil
	}
	return err
}

// DeleteUser implements flows.Directory: DELETE /users/{id}. A missing user
// is ErrNotFound.
func (c *Client) DeleteUser(ctx context.Context, userID string) error {
	return translate("delete user", c.graph.Users().ByUserId(userID).Delete(ctx, nil))
}

// User implements flows.Directory: GET /users/{id | userPrincipalName}. The
// SDK's URI template percent-encodes the key, so guest UPNs
// (bob_x.com#EXT#@contoso.onmicrosoft.com) reach Graph intact.
func (c *Client) User(ctx context.Context, idOrUPN string) (flows.DirectoryUser, error) {
	if idOrUPN == "" {
		return flows.DirectoryUser{}, &flows.DirectoryError{Op: "read user", Err: errors.New("empty user id")}
	}
	u, err := c.graph.Users().ByUserId(idOrUPN).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: userSelect},
	})
	if err != nil {
		return flows.DirectoryUser{}, translate("read user", err)
	}
	return flows.DirectoryUser{
		ID: deref(u.GetId()), DisplayName: deref(u.GetDisplayName()), Mail: deref(u.GetMail()),
		UserPrincipalName: deref(u.GetUserPrincipalName()), UserType: flows.UserType(deref(u.GetUserType())),
		ExternalUserState: deref(u.GetExternalUserState()), OnPremisesUserPrincipalName: deref(u.GetOnPremisesUserPrincipalName()),
	}, nil
}

// batchErrors maps a failed POST /$batch to an ODataError, as the generated
// request builders do, so translate sees Graph's code and message.
// AddSponsor implements flows.Directory: POST /users/{id}/sponsors/$ref.
// The SDK has no builder for it, so the request is built here and sent
// through the same adapter. "Already exists" is success.
func (c *Client) AddSponsor(ctx context.Context, userID, sponsorID string) error {
	const op = "add sponsor"
	adapter := c.graph.GetAdapter()
	req := abstractions.NewRequestInformation()
	req.Method = abstractions.POST
	req.UrlTemplate = "{+baseurl}/users/{user%2Did}/sponsors/$ref"
	req.PathParameters["baseurl"] = adapter.GetBaseUrl()
	req.PathParameters["user%2Did"] = userID
	req.Headers.TryAdd("Accept", "application/json")
	ref := models.NewReferenceCreate()
	odataID := c.base.String() + "/directoryObjects/" + sponsorID
	ref.SetOdataId(&odataID)
	if err := req.SetContentFromParsable(ctx, adapter, "application/json", ref); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	err := translate(op, adapter.SendNoContent(ctx, req, batchErrors))
	if de, ok := err.(*flows.DirectoryError); ok && de.Status == 400 && strings.Contains(de.Message, "already exist") {
		return nil
	}
	return err
}

var batchErrors = abstractions.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue}

// ExternalStates implements flows.Directory with one JSON batch (POST
// /$batch) of GET /users/{id}?$select=id,externalUserState,
// externalUserStateChangeDateTime, one item per id, correlated by item id.
// The items are built by msgraph-sdk-go-core's BatchRequest from the
// generated request builder; the batch goes through the client's request
// adapter (same auth, base URL and middleware, retries off). Throttled
// items are not retried here: their Err carries the item's Retry-After.
func (c *Client) ExternalStates(ctx context.Context, ids []string) ([]flows.ExternalState, error) {
	const op = "read user state"
	if len(ids) == 0 {
		return nil, nil
	}
	if len(ids) > flows.MaxStatesPerRequest {
		return nil, fmt.Errorf("%s: %d users in one request, at most %d", op, len(ids), flows.MaxStatesPerRequest)
	}
	adapter := c.graph.GetAdapter()
	batch := msgraphcore.NewBatchRequest(adapter)
	for i, id := range ids {
		if id == "" {
			return nil, fmt.Errorf("%s: empty user id", op)
		}
		ri, err := c.graph.Users().ByUserId(id).ToGetRequestInformation(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: stateSelect},
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		item, err := batch.AddBatchRequestStep(*ri)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		itemID := strconv.Itoa(i)
		item.SetId(&itemID)
		// The item URL keeps the template's %24select; send $select, as the
		// SDK's ParametersNameDecodingHandler does for top-level requests.
		if u := item.GetUrl(); u != nil {
			if path, query, ok := strings.Cut(*u, "?"); ok {
				decoded := path + "?" + strings.ReplaceAll(query, "%24", "$")
				item.SetUrl(&decoded)
			}
		}
	}
	// Not batch.Send: it maps a failed batch to a bare ApiError (no Graph
	// code or message) unless an error factory is put in a process-global
	// registry. This is the same request with the SDK's own error mapping.
	req := abstractions.NewRequestInformation()
	req.Method = abstractions.POST
	req.UrlTemplate = "{+baseurl}/$batch"
	req.PathParameters["baseurl"] = adapter.GetBaseUrl()
	req.Headers.TryAdd("Accept", "application/json")
	if err := req.SetContentFromParsable(ctx, adapter, "application/json", batch); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	res, err := adapter.Send(ctx, req, msgraphcore.CreateBatchResponseDiscriminator, batchErrors)
	if err != nil {
		return nil, translate(op, err)
	}
	resp, ok := res.(msgraphcore.BatchResponse)
	if !ok || resp == nil {
		return nil, &flows.DirectoryError{Op: op, Status: http.StatusOK, Message: "empty batch response"}
	}
	out := make([]flows.ExternalState, len(ids))
	for i, id := range ids {
		out[i] = stateFrom(op, id, resp.GetResponseById(strconv.Itoa(i)))
	}
	return out, nil
}

// stateFrom reads one batch item's answer.
func stateFrom(op, id string, item msgraphcore.BatchItem) flows.ExternalState {
	st := flows.ExternalState{UserID: id}
	if item == nil || item.GetStatus() == nil {
		st.Err = &flows.DirectoryError{Op: op, Err: errors.New("no answer for this user in the batch response")}
		return st
	}
	body := item.GetBody()
	if status := int(*item.GetStatus()); status < 200 || status > 299 {
		de := &flows.DirectoryError{Op: op, Status: status}
		h := abstractions.NewResponseHeaders()
		for k, v := range item.GetHeaders() {
			h.Add(k, v)
		}
		de.RetryAfter = retryAfter(h)
		if e, ok := body["error"].(map[string]any); ok {
			de.Code, de.Message = str(e["code"]), str(e["message"])
		}
		st.Err = de
		return st
	}
	st.State = str(body["externalUserState"])
	if s := str(body["externalUserStateChangeDateTime"]); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			st.ChangedAt = t
		}
	}
	return st
}

// str reads a string from a batch item body, which the SDK decodes into
// *string (or string) values; null and anything else is "".
func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case *string:
		if s != nil {
			return *s
		}
	}
	return ""
}
