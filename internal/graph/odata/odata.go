// Package odata builds the OData query strings invitebot sends to Microsoft
// Graph. It imports only the standard library, not the Graph SDK, so its
// tests and fuzz targets build in seconds (go test -fuzz instruments every
// package a test binary links; internal/graph links msgraph-sdk-go).
package odata

import "strings"

// Literal returns s as an OData string literal: in single quotes, with
// each single quote doubled (OData's only escape inside a literal). It
// does not percent-encode: the Graph SDK encodes the whole query.
func Literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// FilterByEmail builds the lookup filter for an address: mail, otherMails,
// SMTP proxyAddresses (and userPrincipalName when withUPN). All forms work
// without ConsistencyLevel (default, strongly consistent).
func FilterByEmail(email string, withUPN bool) string {
	lit := Literal(email)
	f := "mail eq " + lit + " or otherMails/any(x:x eq " + lit + ") or proxyAddresses/any(x:x eq " + Literal("smtp:"+email) + ")"
	if withUPN {
		f += " or userPrincipalName eq " + lit
	}
	return f
}
