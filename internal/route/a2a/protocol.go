// Package a2a is the gateway's A2A (Agent-to-Agent) server: JSON-RPC 2.0
// on POST /a2a (message/send, message/stream, tasks/get, tasks/cancel in
// the shapes of A2A protocol 0.3), the public agent card at
// /.well-known/agent.json, the management helpers under /api/a2a/, and
// the five built-in skills (smart-routing, quota-management,
// provider-discovery, cost-analysis, health-report), each answering from
// the gateway's own state. It owns the tasks: kept in memory with a cap
// and a time to live, each belonging to the gateway key that created it,
// and cancellable while its skill runs. The server answers only while
// the stored setting a2a_enabled is "true".
package a2a

import (
	"encoding/json"
	"time"
)

// ProtocolVersion is the A2A protocol version the server speaks.
const ProtocolVersion = "0.3.0"

// Task states (A2A's TaskState, spelled as the protocol spells them).
const (
	StateSubmitted = "submitted"
	StateWorking   = "working"
	StateCompleted = "completed"
	StateFailed    = "failed"
	StateCanceled  = "canceled"
)

// States lists the states a task may have.
var States = []string{StateSubmitted, StateWorking, StateCompleted, StateFailed, StateCanceled}

func terminal(state string) bool {
	return state == StateCompleted || state == StateFailed || state == StateCanceled
}

// Part is one piece of a message or an artifact: text ("text") or
// structured data ("data").
type Part struct {
	Kind     string         `json:"kind"`
	Text     string         `json:"text,omitempty"`
	Data     any            `json:"data,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Message is one turn of a task.
type Message struct {
	Kind      string         `json:"kind"` // "message"
	Role      string         `json:"role"` // "user" | "agent"
	Parts     []Part         `json:"parts"`
	MessageID string         `json:"messageId"`
	TaskID    string         `json:"taskId,omitempty"`
	ContextID string         `json:"contextId,omitempty"`
	Metadata  map[string]any `json:"metadata,omitempty"`
}

// Artifact is an output of a task.
type Artifact struct {
	ArtifactID  string `json:"artifactId"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Parts       []Part `json:"parts"`
}

// TaskStatus is a task's state and when it was reached.
type TaskStatus struct {
	State     string   `json:"state"`
	Message   *Message `json:"message,omitempty"`
	Timestamp string   `json:"timestamp"`
}

// Task is A2A's task object.
type Task struct {
	Kind      string         `json:"kind"` // "task"
	ID        string         `json:"id"`
	ContextID string         `json:"contextId"`
	Status    TaskStatus     `json:"status"`
	Artifacts []Artifact     `json:"artifacts"`
	History   []Message      `json:"history,omitempty"`
	Metadata  map[string]any `json:"metadata"`
}

// StatusUpdate is a message/stream event: the task's state changed.
type StatusUpdate struct {
	Kind      string     `json:"kind"` // "status-update"
	TaskID    string     `json:"taskId"`
	ContextID string     `json:"contextId"`
	Status    TaskStatus `json:"status"`
	Final     bool       `json:"final"`
}

// ArtifactUpdate is a message/stream event: the task produced an
// artifact.
type ArtifactUpdate struct {
	Kind      string   `json:"kind"` // "artifact-update"
	TaskID    string   `json:"taskId"`
	ContextID string   `json:"contextId"`
	Artifact  Artifact `json:"artifact"`
	LastChunk bool     `json:"lastChunk"`
}

// JSON-RPC 2.0 and A2A error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
	// CodeDisabled answers every call while a2a_enabled is not "true"
	// (in the JSON-RPC server error range).
	CodeDisabled = -32000
	// CodeTooManyTasks answers a message when the key has as many tasks
	// running, or kept, as it may.
	CodeTooManyTasks = -32010
	// A2A's own codes.
	CodeTaskNotFound      = -32001
	CodeTaskNotCancelable = -32002
	CodeUnsupported       = -32004
)

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *rpcError) Error() string { return e.Message }

func errorf(code int, msg string) *rpcError { return &rpcError{Code: code, Message: msg} }

// request is a JSON-RPC request as read.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// response is a JSON-RPC response.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// sendParams are message/send's and message/stream's params: A2A's
// MessageSendParams, or the gateway's shorter form {skill, messages:
// [{role, content}]}.
type sendParams struct {
	Message  *Message       `json:"message"`
	Skill    string         `json:"skill"`
	Messages []shortMessage `json:"messages"`
	Metadata map[string]any `json:"metadata"`
}

type shortMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// taskParams are tasks/get's and tasks/cancel's params (A2A's
// TaskQueryParams / TaskIdParams; taskId is accepted for id).
type taskParams struct {
	ID     string `json:"id"`
	TaskID string `json:"taskId"`
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
