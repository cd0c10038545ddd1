package parley

import "time"

// ReportReason says why a user reported a message or a user.
type ReportReason string

// Report reasons.
const (
	ReasonSpam          ReportReason = "spam"
	ReasonHarassment    ReportReason = "harassment"
	ReasonInappropriate ReportReason = "inappropriate"
	ReasonOther         ReportReason = "other"
)

// Valid reports whether r is a known reason.
func (r ReportReason) Valid() bool {
	switch r {
	case ReasonSpam, ReasonHarassment, ReasonInappropriate, ReasonOther:
		return true
	}
	return false
}

// Limits on reports.
const (
	ReportCommentMaxLen = 1000 // characters, the reporter's comment and an admin's resolution
	MaxReportsPage      = 200
)

// Report states.
const (
	ReportOpen     = "open"
	ReportResolved = "resolved"
)

// Report is a user's report of a message or of another user, for admins
// to review. Content is the reported message's content as the server had
// it in plaintext (ContentSource "server") or, when it had none it could
// read (an end-to-end encrypted message), as the reporter's client
// supplied it ("client"); it is sealed at rest like message bodies.
type Report struct {
	ID             string       `json:"id"`
	ReporterID     string       `json:"reporter_id"`
	UserID         string       `json:"user_id"` // the reported user (a message's sender)
	ConversationID string       `json:"conversation_id,omitempty"`
	Seq            int64        `json:"seq,omitempty"`
	MessageID      string       `json:"message_id,omitempty"`
	Reason         ReportReason `json:"reason"`
	Comment        string       `json:"comment,omitempty"`
	Content        string       `json:"content,omitempty"`
	ContentSource  string       `json:"content_source,omitempty"`
	State          string       `json:"state"`
	CreatedAt      time.Time    `json:"created_at"`
	ResolvedAt     time.Time    `json:"resolved_at,omitzero"`
	ResolvedBy     string       `json:"resolved_by,omitempty"`
	Resolution     string       `json:"resolution,omitempty"`
}

// ReportQuery selects a page of reports, newest first: those in State
// ("" for any), created before the report BeforeID ("" for the newest),
// at most Limit (1..MaxReportsPage).
type ReportQuery struct {
	State    string
	BeforeID string
	Limit    int
}
