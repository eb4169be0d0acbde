package a2a

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
)

// Limits are the caps of the task store; zero fields take the defaults.
type Limits struct {
	// MaxTasks is how many tasks the server keeps in all; past it the
	// oldest finished one is dropped, and with none finished a new
	// message is refused.
	MaxTasks int
	// MaxTasksPerKey is how many tasks one key keeps (its oldest finished
	// one is dropped to make room).
	MaxTasksPerKey int
	// MaxRunningPerKey is how many of one key's tasks may run at once.
	MaxRunningPerKey int
	// TTL is how long a finished task is kept.
	TTL time.Duration
}

// The default caps.
const (
	DefaultMaxTasks         = 2_000
	DefaultMaxTasksPerKey   = 200
	DefaultMaxRunningPerKey = 8
	DefaultTTL              = 24 * time.Hour
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxTasks, DefaultMaxTasks)
	def(&l.MaxTasksPerKey, DefaultMaxTasksPerKey)
	def(&l.MaxRunningPerKey, DefaultMaxRunningPerKey)
	if l.TTL <= 0 {
		l.TTL = DefaultTTL
	}
	return l
}

var (
	errTooManyRunning = errors.New("too many running tasks")
	errTooManyTasks   = errors.New("too many tasks")
	errNotFound       = errors.New("task not found")
	errNotCancelable  = errors.New("task not cancelable")
)

// record is a task and what only the server knows of it.
type record struct {
	task    Task
	owner   string // the gateway key id ("" for a keyless local client)
	skill   string
	created time.Time
	updated time.Time
	seq     uint64 // store.seq at the last change: orders changes within one clock tick
	cancel  context.CancelFunc
}

// store keeps the tasks in memory, bounded by Limits.
type store struct {
	clk    clock.Clock
	limits Limits

	mu   sync.Mutex
	byID map[string]*record
	seq  uint64 // changes so far
}

func newStore(clk clock.Clock, l Limits) *store {
	return &store{clk: clk, limits: l.withDefaults(), byID: map[string]*record{}}
}

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// create adds a submitted task of owner running skill; cancel stops it.
func (s *store) create(owner, skill, contextID string, msg Message, cancel context.CancelFunc) (Task, error) {
	now := s.clk.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	running, kept := 0, 0
	for _, r := range s.byID {
		if r.owner == owner {
			kept++
			if !terminal(r.task.Status.State) {
				running++
			}
		}
	}
	if running >= s.limits.MaxRunningPerKey {
		return Task{}, errTooManyRunning
	}
	if kept >= s.limits.MaxTasksPerKey && !s.dropOldestLocked(func(r *record) bool { return r.owner == owner }) {
		return Task{}, errTooManyTasks
	}
	if len(s.byID) >= s.limits.MaxTasks && !s.dropOldestLocked(func(*record) bool { return true }) {
		return Task{}, errTooManyTasks
	}
	if contextID == "" {
		contextID = newID("ctx_")
	}
	id := newID("task_")
	msg.TaskID, msg.ContextID = id, contextID
	r := &record{owner: owner, skill: skill, created: now, updated: now, seq: s.next(), cancel: cancel, task: Task{
		Kind: "task", ID: id, ContextID: contextID,
		Status:    TaskStatus{State: StateSubmitted, Timestamp: stamp(now)},
		Artifacts: []Artifact{},
		History:   []Message{msg},
		Metadata:  map[string]any{"skill": skill, "createdAt": stamp(now)},
	}}
	s.byID[id] = r
	return cloneTask(r.task), nil
}

// next numbers one change; s.mu is held.
func (s *store) next() uint64 {
	s.seq++
	return s.seq
}

// older reports whether a changed before b (by time, then by order of
// change, since a coarse clock gives many changes one time).
func older(a, b *record) bool {
	if !a.updated.Equal(b.updated) {
		return a.updated.Before(b.updated)
	}
	return a.seq < b.seq
}

// dropOldestLocked removes the oldest finished task that match selects.
func (s *store) dropOldestLocked(match func(*record) bool) bool {
	var oldest *record
	for _, r := range s.byID {
		if terminal(r.task.Status.State) && match(r) && (oldest == nil || older(r, oldest)) {
			oldest = r
		}
	}
	if oldest == nil {
		return false
	}
	delete(s.byID, oldest.task.ID)
	return true
}

// sweepLocked drops the finished tasks older than the TTL.
func (s *store) sweepLocked(now time.Time) {
	for id, r := range s.byID {
		if terminal(r.task.Status.State) && now.Sub(r.updated) > s.limits.TTL {
			delete(s.byID, id)
		}
	}
}

// get returns owner's task id; anyOwner is for the management helpers.
func (s *store) get(owner, id string, anyOwner bool) (Task, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok || (!anyOwner && r.owner != owner) {
		return Task{}, "", false
	}
	return cloneTask(r.task), r.owner, true
}

// setState moves a task that has not finished to state (with an
// optional agent message) and returns it; a finished task (cancelled
// while its skill ran) is returned unchanged with changed false.
func (s *store) setState(id, state string, msg *Message) (t Task, changed bool) {
	now := s.clk.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok {
		return Task{}, false
	}
	if terminal(r.task.Status.State) {
		return cloneTask(r.task), false
	}
	r.task.Status = TaskStatus{State: state, Message: msg, Timestamp: stamp(now)}
	r.updated, r.seq = now, s.next()
	if terminal(state) {
		r.task.Metadata["durationMs"] = now.Sub(r.created).Milliseconds()
		r.cancel()
	}
	return cloneTask(r.task), true
}

// addArtifacts appends a running task's artifacts.
func (s *store) addArtifacts(id string, as []Artifact) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok || terminal(r.task.Status.State) {
		return false
	}
	r.task.Artifacts = append(r.task.Artifacts, as...)
	return true
}

// cancel cancels owner's task id (any owner's with anyOwner): it is
// canceled at once and its skill is stopped.
func (s *store) cancelTask(owner, id string, anyOwner bool) (Task, error) {
	s.mu.Lock()
	r, ok := s.byID[id]
	if !ok || (!anyOwner && r.owner != owner) {
		s.mu.Unlock()
		return Task{}, errNotFound
	}
	if terminal(r.task.Status.State) {
		s.mu.Unlock()
		return Task{}, errNotCancelable
	}
	s.mu.Unlock()
	t, changed := s.setState(id, StateCanceled, agentText("canceled by the client"))
	if !changed {
		return Task{}, errNotCancelable
	}
	return t, nil
}

// entry is a task as the management helpers list it.
type entry struct {
	Task
	Owner string `json:"apiKeyId"`
}

// list returns the tasks with state and skill ("" any), newest first,
// from offset, at most limit, and how many match.
func (s *store) list(state, skill string, limit, offset int) ([]entry, int) {
	s.mu.Lock()
	s.sweepLocked(s.clk.Now())
	var match []*record
	for _, r := range s.byID {
		if (state == "" || r.task.Status.State == state) && (skill == "" || r.skill == skill) {
			match = append(match, r)
		}
	}
	slices.SortFunc(match, func(a, b *record) int {
		if c := b.created.Compare(a.created); c != 0 {
			return c
		}
		return compareStrings(a.task.ID, b.task.ID)
	})
	total := len(match)
	out := []entry{}
	for i := offset; i < len(match) && len(out) < limit; i++ {
		out = append(out, entry{Task: cloneTask(match[i].task), Owner: match[i].owner})
	}
	s.mu.Unlock()
	return out, total
}

// stats counts the tasks by state and by skill.
func (s *store) stats() (total int, byState, bySkill map[string]int) {
	byState, bySkill = map[string]int{}, map[string]int{}
	for _, st := range States {
		byState[st] = 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(s.clk.Now())
	for _, r := range s.byID {
		byState[r.task.Status.State]++
		bySkill[r.skill]++
	}
	return len(s.byID), byState, bySkill
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cloneTask copies what a task's readers could otherwise share with the
// store (the slices and the metadata map; parts are never changed once
// stored).
func cloneTask(t Task) Task {
	t.Artifacts = slices.Clone(t.Artifacts)
	t.History = slices.Clone(t.History)
	m := make(map[string]any, len(t.Metadata))
	for k, v := range t.Metadata {
		m[k] = v
	}
	t.Metadata = m
	return t
}

func agentText(text string) *Message {
	return &Message{Kind: "message", Role: "agent", MessageID: newID("msg_"), Parts: []Part{{Kind: "text", Text: text}}}
}
