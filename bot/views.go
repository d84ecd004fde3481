package bot

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// Block Kit limits the renderers respect (reference/slack.md §3.1).
const (
	maxRadioOptions = 10
	maxOptionText   = 75
	maxTextLen      = 3000
	// maxJustificationLen bounds the justification an approver reads.
	maxJustificationLen = 1000
)

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, truncate(s, maxTextLen), false, false)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, truncate(s, maxTextLen), false, false)
}

func section(md string) *slack.SectionBlock { return slack.NewSectionBlock(mrkdwn(md), nil, nil) }

func note(md string) *slack.ContextBlock {
	return slack.NewContextBlock("", mrkdwn(md))
}

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Prefill is what /invite-guest's arguments fill into the dialog.
type Prefill struct {
	Email, DisplayName string
}

// textInput returns an input block with a plain-text input whose action_id
// equals its block ID.
func textInput(id, label, hint, initial string, maxLen int, optional, multiline bool) *slack.InputBlock {
	el := slack.NewPlainTextInputBlockElement(nil, id)
	el.InitialValue = initial
	el.MaxLength = maxLen
	el.Multiline = multiline
	var h *slack.TextBlockObject
	if hint != "" {
		h = plain(hint)
	}
	b := slack.NewInputBlock(id, plain(label), h, el)
	b.Optional = optional
	return b
}

// InviteModal renders the invitation dialog. admin adds the user type
// choice; the groups multi-select appears only when the policy offers groups.
// Pre-filled values longer than their input allows are cut (Slack refuses
// to open a dialog whose initial value exceeds max_length).
func InviteModal(pre Prefill, p flows.Policy, admin bool) slack.ModalViewRequest {
	pre.Email = truncate(pre.Email, flows.MaxEmailLen)
	pre.DisplayName = truncate(pre.DisplayName, flows.MaxDisplayNameLen)
	blocks := []slack.Block{
		textInput(BlockEmail, "Guest's email address", "Their work address at the partner organisation.", pre.Email, flows.MaxEmailLen, false, false),
		textInput(BlockDisplayName, "Display name", "", pre.DisplayName, flows.MaxDisplayNameLen, true, false),
		textInput(BlockRedirectURL, "Where they land after accepting", "An https:// URL.", p.DefaultRedirectURL, flows.MaxRedirectURLLen, false, false),
	}
	link := slack.NewOptionBlockObject(string(flows.DeliverySlackLink), plain("Send me the invitation link in Slack"),
		plain("Microsoft sends no email; you forward the link."))
	email := slack.NewOptionBlockObject(string(flows.DeliveryMicrosoftEmail), plain("Microsoft emails the guest"),
		plain("From invites@microsoft.com."))
	radio := slack.NewRadioButtonsBlockElement(BlockDelivery, link, email)
	radio.InitialOption = link
	blocks = append(blocks,
		slack.NewInputBlock(BlockDelivery, plain("How should the invitation be delivered?"), nil, radio),
		textInput(BlockMessage, "Personal message", "Included in the invitation.", "", flows.MaxMessageLen, true, true),
		textInput(BlockCC, "Also send Microsoft's email to (cc)", "One address; only with Microsoft's email.", "", flows.MaxEmailLen, true, false),
	)
	if admin {
		guest := slack.NewOptionBlockObject(string(flows.UserTypeGuest), plain("Guest"), nil)
		member := slack.NewOptionBlockObject(string(flows.UserTypeMember), plain("Member"), plain("Admins only."))
		ut := slack.NewRadioButtonsBlockElement(BlockUserType, guest, member)
		ut.InitialOption = guest
		blocks = append(blocks, slack.NewInputBlock(BlockUserType, plain("User type"), nil, ut))
	}
	if len(p.Groups) > 0 {
		opts := make([]*slack.OptionBlockObject, 0, len(p.Groups))
		for _, g := range p.Groups {
			opts = append(opts, slack.NewOptionBlockObject(g.ID, plain(truncate(g.Name, maxOptionText)), nil))
		}
		ms := slack.NewOptionsMultiSelectBlockElement(slack.MultiOptTypeStatic, plain("Choose groups"), BlockGroups, opts...)
		gb := slack.NewInputBlock(BlockGroups, plain("Add to groups"), plain("Gives the guest access to the apps of these groups."), ms)
		gb.Optional = true
		blocks = append(blocks, gb)
	}
	blocks = append(blocks, expiryInput(p))
	if p.HasApprovals() {
		blocks = append(blocks, textInput(BlockJustification, "Why do you need this guest?",
			"Required when the invitation needs an approver's OK (some partner domains and groups do).", "", maxJustificationLen, true, true))
	}
	blocks = append(blocks,
		slack.NewDividerBlock(),
		note("*Optional attributes* written to the guest's directory entry."),
		textInput(BlockGivenName, "Given name", "", "", flows.MaxGivenNameLen, true, false),
		textInput(BlockSurname, "Surname", "", "", flows.MaxSurnameLen, true, false),
		textInput(BlockCompanyName, "Company name", "", "", flows.MaxCompanyNameLen, true, false),
		textInput(BlockJobTitle, "Job title", "", "", flows.MaxJobTitleLen, true, false),
	)
	return slack.ModalViewRequest{
		Type:       slack.VTModal,
		CallbackID: CallbackInvite,
		Title:      plain("Invite a guest"),
		Submit:     plain("Invite"),
		Close:      plain("Cancel"),
		Blocks:     slack.Blocks{BlockSet: blocks},
	}
}

// metadata is the dialogs' private_metadata.
type metadata struct {
	Invitation string `json:"inv,omitempty"`
}

func (m metadata) String() string {
	b, _ := json.Marshal(m)
	return string(b)
}

func parseMetadata(s string) metadata {
	var m metadata
	_ = json.Unmarshal([]byte(s), &m)
	return m
}

// externalID is the dialog's external_id while an invitation runs, so
// background updates address the dialog only after Slack applied the
// submission's response (no race with the acknowledgement).
func externalID(inv *flows.Invitation) string { return "invitebot-" + inv.ID }

// StatusModal renders the dialog while the invitation runs and after.
func StatusModal(inv *flows.Invitation, p flows.Policy, retryIn string) slack.ModalViewRequest {
	r := inv.Request
	who := Escape(r.Email)
	if r.DisplayName != "" {
		who = fmt.Sprintf("%s (%s)", Escape(r.DisplayName), Escape(r.Email))
	}
	var blocks []slack.Block
	switch inv.State {
	case flows.StateNotified, flows.StateProvisioned:
		blocks = append(blocks, section(":white_check_mark: "+doneSummary(inv, p)),
			note("Details and the next steps are in your DM from invitebot."))
	case flows.StateFailed:
		blocks = append(blocks, section(":x: *Could not invite* "+who+"\n"+FailureText(inv.Failure)))
	case flows.StateAwaitingApproval:
		blocks = append(blocks, section(":raising_hand: *Waiting for approval* to invite "+who+"\n"+progressText(inv)),
			note("You can close this dialog."))
	default:
		blocks = append(blocks, section(fmt.Sprintf(":hourglass_flowing_sand: *Inviting* %s\n%s", who, progressText(inv))))
		if retryIn != "" {
			blocks = append(blocks, note("Microsoft Graph asked us to slow down or is unavailable; retrying in "+retryIn+"."))
		}
		blocks = append(blocks, note("You can close this dialog: invitebot will DM you the result."))
	}
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      CallbackStatus,
		Title:           plain("Invite a guest"),
		Close:           plain("Close"),
		Blocks:          slack.Blocks{BlockSet: blocks},
		PrivateMetadata: metadata{Invitation: inv.ID}.String(),
		ExternalID:      externalID(inv),
	}
}

func progressText(inv *flows.Invitation) string {
	switch inv.State {
	case flows.StateAwaitingApproval:
		return "Sent for approval to " + mentions(inv.Approval) + ". invitebot DMs you the decision."
	case flows.StateRequested, flows.StateChecking:
		return "Checking the directory for an existing account…"
	case flows.StateInviting:
		return "Sending the invitation to Microsoft Entra…"
	case flows.StateInvited:
		return "Invited. Writing the guest's details…"
	case flows.StateAttributesSet:
		return "Adding the guest to groups…"
	case flows.StateGroupsAdded:
		return "Recording the guest…"
	}
	return "Working…"
}

// PickModal renders the existing matches for the inviter to choose from.
func PickModal(inv *flows.Invitation) slack.ModalViewRequest {
	n := len(inv.Matches)
	shown := inv.Matches
	if len(shown) > maxRadioOptions-1 {
		shown = shown[:maxRadioOptions-1]
	}
	opts := make([]*slack.OptionBlockObject, 0, len(shown)+1)
	for _, u := range shown {
		name := u.DisplayName
		if name == "" {
			name = u.Mail
		}
		state := u.ExternalUserState
		if state == "" {
			state = "no invitation state"
		}
		desc := fmt.Sprintf("%s · %s · %s", firstNonEmpty(u.Mail, u.UserPrincipalName), orDash(string(u.UserType)), state)
		opts = append(opts, slack.NewOptionBlockObject(u.ID, plain(truncate(name, maxOptionText)), plain(truncate(desc, maxOptionText))))
	}
	opts = append(opts, slack.NewOptionBlockObject(PickNew, plain("None of these: invite as a new guest"), nil))
	radio := slack.NewRadioButtonsBlockElement(BlockPick, opts...)
	blocks := []slack.Block{
		section(fmt.Sprintf("*%d existing account(s)* in the directory use %s. Pick one to give it the access you asked for (no invitation is sent), or invite a new guest.",
			n, Escape(inv.Request.Email))),
		slack.NewInputBlock(BlockPick, plain("Which account?"), nil, radio),
	}
	if n > len(shown) {
		blocks = append(blocks, note(fmt.Sprintf("…and %d more not shown.", n-len(shown))))
	}
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      CallbackPick,
		Title:           plain("Existing accounts"),
		Submit:          plain("Continue"),
		Close:           plain("Cancel"),
		Blocks:          slack.Blocks{BlockSet: blocks},
		PrivateMetadata: metadata{Invitation: inv.ID}.String(),
		ExternalID:      externalID(inv),
		NotifyOnClose:   true,
	}
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// doneSummary is one mrkdwn line saying what was done.
func doneSummary(inv *flows.Invitation, p flows.Policy) string {
	r := inv.Request
	name := Escape(firstNonEmpty(r.DisplayName, r.Email))
	var b strings.Builder
	if inv.Picked {
		fmt.Fprintf(&b, "*%s* already had an account; access granted", name)
	} else {
		fmt.Fprintf(&b, "*%s* is invited as a %s", name, Escape(strings.ToLower(string(r.UserType))))
	}
	if len(inv.GroupsAdded) > 0 {
		names := make([]string, len(inv.GroupsAdded))
		for i, g := range inv.GroupsAdded {
			names[i] = Escape(p.GroupName(g))
		}
		fmt.Fprintf(&b, " and added to %s", strings.Join(names, ", "))
	}
	fmt.Fprintf(&b, ". Object ID `%s`.", Escape(inv.ObjectID))
	return b.String()
}

// FailureText explains a failure to the inviter, in mrkdwn.
func FailureText(f *flows.Failure) string { return failureText(f, Escape, "*") }

// FailureReason says in plain text (not mrkdwn) why an invitation failed,
// for the bulk results file.
func FailureReason(f *flows.Failure) string {
	return failureText(f, func(s string) string { return s }, "")
}

// failureText renders f, passing Graph's words through esc and marking
// bold text with bold.
func failureText(f *flows.Failure, esc func(string) string, bold string) string {
	if f == nil {
		return "Something went wrong; the invitebot admins can see the details in its log."
	}
	switch f.Code {
	case flows.FailForbidden:
		return forbiddenText(f.Op, bold)
	case flows.FailRejected:
		return "Microsoft Graph rejected the request: " + esc(f.Message)
	case flows.FailThrottled:
		return "Microsoft Graph kept throttling us after several retries. Please try again in a few minutes."
	case flows.FailUnavailable:
		return "Microsoft Graph was unavailable after several retries. Please try again in a few minutes."
	case flows.FailNotFound:
		return "The new guest did not appear in the directory in time (replication delay). The invitation was sent; ask an admin to add the groups, or try again."
	case flows.FailInternalUser:
		return "That address is in one of your organisation's own domains: it is an internal user, not a guest."
	case flows.FailCancelled:
		return "Cancelled: the dialog was closed before an account was picked."
	case flows.FailNotify:
		return "Done in Entra, but Slack could not be reached to tell you."
	case flows.FailCredential:
		return "invitebot could not sign in to Microsoft Entra: its client secret or certificate was rejected or has expired. Ask the invitebot admins to renew it."
	case flows.FailDenied:
		return "An approver denied the invitation: " + esc(f.Message)
	case flows.FailApprovalExpired:
		return "Nobody decided on the invitation in time, so the request expired. Ask again if you still need the guest."
	case flows.FailRefused:
		return esc(f.Message)
	case flows.FailNeedsPick:
		return "This address already has accounts that a person must choose between: " + esc(f.Message) + "."
	case flows.FailConvertRefused:
		return "This account cannot be converted to B2B: " + esc(f.Message) + "."
	case flows.FailInviterRefused:
		return "Microsoft Entra refused: you may not invite guests in this tenant (ask an admin for the Guest Inviter role). Microsoft Graph said: " + esc(f.Message)
	case flows.FailNotConnected:
		return "Not connected: " + esc(f.Message) + ". Run /invite-guest connect, then invite again."
	}
	return "Something went wrong; the invitebot admins can see the details in its log."
}

// forbiddenText names the Graph permission a 403 on op points to.
func forbiddenText(op, bold string) string {
	perm := "User.Invite.All"
	switch {
	case op == "read organization":
		perm = "Organization.Read.All"
	case op == "read domains":
		perm = "Domain.Read.All"
	case strings.Contains(op, "group member"):
		perm = "GroupMember.ReadWrite.All"
	case op == "update user" || op == "delete user" || op == "disable user" || op == "add sponsor":
		perm = "User.ReadWrite.All"
	case strings.HasPrefix(op, "find user") || strings.HasPrefix(op, "read user"):
		perm = "User.Read.All"
	}
	msg := "Microsoft Entra refused: the app lacks the " + bold + perm + bold + " permission (or admin consent)"
	if perm == "User.Invite.All" {
		msg += ", or guest invitations are turned off altogether in this tenant"
	}
	return msg + ". Ask your Entra admin."
}
