package push

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// names are the JetStream resources of one namespace (QueueConfig):
// clusters (or tests) sharing a NATS server keep apart by namespace.
type names struct {
	stream, dead, consumer, state, trace string
	// Subjects: the core enqueues message and read jobs; the push role
	// fans them out into device jobs (dev + device id), one per device
	// that may need a notification, and moves failures to dead +
	// provider.
	msg, read, dev, deadPrefix string
}

func namesFor(ns string) names {
	prefix := "parley.push." + ns + "."
	return names{
		stream:     "PARLEY_PUSH_" + ns,
		dead:       "PARLEY_PUSH_DEAD_" + ns,
		consumer:   "parley-push",
		state:      "parley_push_state_" + ns,
		trace:      "parley_push_trace_" + ns,
		msg:        prefix + "msg",
		read:       prefix + "read",
		dev:        prefix + "dev.",
		deadPrefix: "parley.pushdead." + ns + ".",
	}
}

// validNamespace: letters, digits, - and _, 1 to 32 of them (a subject
// token, stream and bucket name part).
func validNamespace(ns string) bool {
	if ns == "" || len(ns) > 32 {
		return false
	}
	for _, c := range ns {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// MessageJob is enqueued after a message commits: the push role decides
// which of the members' devices get a notification.
type MessageJob struct {
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	MessageID      string `json:"message_id"` // the trace id
	SenderID       string `json:"sender_id"`
	// MessageType is the message's type (text, image, video, file): the
	// only thing a notification says about its content besides the
	// optional text preview (never an attachment's URL or filename).
	MessageType string `json:"message_type,omitempty"`
	// CommittedAt and EnqueuedAt are Unix milliseconds.
	CommittedAt int64 `json:"committed_at"`
	EnqueuedAt  int64 `json:"enqueued_at"`
}

// ReadJob is enqueued when a user's read_seq rises: the user's other
// devices that hold a notification of the conversation get a silent
// update.
type ReadJob struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	DeviceID       string `json:"device_id"` // the device that read
	ReadSeq        int64  `json:"read_seq"`
	At             int64  `json:"at"`
}

// DeviceJob is one device's notification, due at Due. Attempt counts the
// sends tried before this one.
type DeviceJob struct {
	Kind           string `json:"kind"` // KindMessage or KindRead
	DeviceID       string `json:"device_id"`
	UserID         string `json:"user_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	MessageID      string `json:"message_id,omitempty"`
	SenderID       string `json:"sender_id,omitempty"`
	MessageType    string `json:"message_type,omitempty"`
	CommittedAt    int64  `json:"committed_at"`
	Due            int64  `json:"due"`
	Attempt        int    `json:"attempt"`
	// Live says the device had a live session at fan-out: this job
	// checks, after the delivered grace, that the message arrived.
	Live bool `json:"live,omitempty"`
}

// msgID is the JetStream deduplication id of a job: a message job is
// enqueued again when a send is retried, and a fan-out runs again when
// the role dies before its ack; the stream keeps one of each.
func (j *MessageJob) msgID() string {
	return "m:" + j.ConversationID + ":" + strconv.FormatInt(j.Seq, 10)
}

func (j *ReadJob) msgID() string {
	return "r:" + j.UserID + ":" + j.ConversationID + ":" + strconv.FormatInt(j.ReadSeq, 10)
}

func (j *DeviceJob) msgID() string {
	return fmt.Sprintf("d:%s:%s:%s:%d:%d", j.Kind, j.DeviceID, j.ConversationID, j.Seq, j.Attempt)
}

// committed is the job's commit time.
func (j *DeviceJob) committed() time.Time { return time.UnixMilli(j.CommittedAt) }

// decodeJob reads a job's JSON into v and checks its essentials; a
// *decodeError if it cannot.
func decodeJob(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return &decodeError{fmt.Errorf("push: undecodable job: %w", err)}
	}
	switch j := v.(type) {
	case *MessageJob:
		if j.ConversationID == "" || j.Seq <= 0 {
			return &decodeError{fmt.Errorf("push: message job without conversation or seq")}
		}
	case *ReadJob:
		if j.ConversationID == "" || j.UserID == "" {
			return &decodeError{fmt.Errorf("push: read job without conversation or user")}
		}
	case *DeviceJob:
		if j.DeviceID == "" || j.ConversationID == "" || (j.Kind != KindMessage && j.Kind != KindRead) {
			return &decodeError{fmt.Errorf("push: device job without device, conversation or kind")}
		}
	}
	return nil
}
