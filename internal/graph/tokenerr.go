package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TokenErrorSummary says in one line why no token was acquired: when the
// token service answered, its HTTP status and the first useful line of the
// answer (OAuth's error_description, such as "AADSTS7000215: Invalid client
// secret provided…"); otherwise the error with its lines joined (a
// transport error such as "connection refused" is on its last line). The
// token service never echoes the credential, and the request, which holds
// it, is not shown.
func TokenErrorSummary(err error) string {
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil {
		s := "the token service answered " + afe.RawResponse.Status
		if body, rerr := runtime.Payload(afe.RawResponse); rerr == nil {
			if line := firstUsefulLine(body); line != "" {
				s += ": " + line
			}
		}
		return s
	}
	return clip(strings.Join(strings.Fields(err.Error()), " "), 400)
}

// firstUsefulLine is an error body's message: error_description or
// error.message of a JSON body, else its first non-blank line.
func firstUsefulLine(body []byte) string {
	var j struct {
		Description string          `json:"error_description"`
		Error       json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &j) == nil {
		var nested struct {
			Message string `json:"message"`
		}
		switch {
		case j.Description != "":
			return clip(firstLine(j.Description), 300)
		case json.Unmarshal(j.Error, &nested) == nil && nested.Message != "":
			return clip(firstLine(nested.Message), 300)
		}
	}
	return clip(firstLine(string(body)), 300)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return fmt.Sprintf("%s…", string(r[:n]))
	}
	return s
}
