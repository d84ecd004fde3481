// Package flows is invitebot's domain: the invitation request, the invitation
// record and its states, validation, and the workflow that moves a record
// from "requested" to "notified".
//
// flows imports only the standard library. It declares the small ports it
// consumes (Directory, Store, Notifier) and the adapters implement them:
// internal/graph (Microsoft Graph), internal/store (bbolt) and bot (Slack).
// Nothing in this package knows about Slack blocks, Graph SDK types or bbolt.
package flows
