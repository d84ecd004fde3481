package flows

// Step is one run of the Slack Workflow Builder step "Invite an external
// guest": the function_executed event's inputs (DESIGN.md "Slack Workflow
// Builder step").
type Step struct {
	// ExecutionID is the step's function_execution_id: the invitation's
	// origin key, and what its completion completes.
	ExecutionID         string
	WorkflowExecutionID string
	// Token is the workflow token the completion is sent with: a
	// credential, kept only in the store and never logged.
	Token string
	// Requester is the person who ran the workflow (the user_context
	// input): the inviter, to whom the policy applies.
	Requester Inviter
	// Email … Justification are the step's string inputs. Groups are
	// policy group names or object IDs separated by ";", as in bulk files;
	// Delivery is "slack_link", "microsoft_email" or "" (the policy's).
	Email, DisplayName, Message, Groups, Delivery, Justification string
}
