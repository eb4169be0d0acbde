package a2a

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
)

func newTask(t *testing.T, s *store, owner string) (string, error) {
	t.Helper()
	_, cancel := context.WithCancel(context.Background())
	tk, err := s.create(owner, SkillHealthReport, "", Message{Kind: "message", Role: "user"}, cancel)
	return tk.ID, err
}

// The store's caps: running tasks per key, kept tasks per key and in
// all (the oldest finished one makes room), and the time finished tasks
// are kept.
func TestStoreCaps(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	s := newStore(clk, Limits{MaxTasks: 5, MaxTasksPerKey: 3, MaxRunningPerKey: 2, TTL: time.Hour})
	a1, _ := newTask(t, s, "a")
	a2, _ := newTask(t, s, "a")
	if _, err := newTask(t, s, "a"); !errors.Is(err, errTooManyRunning) {
		t.Fatalf("third running task: %v", err)
	}
	s.setState(a1, StateCompleted, nil)
	clk.Advance(time.Second)
	s.setState(a2, StateCompleted, nil)
	a3, err := newTask(t, s, "a")
	if err != nil {
		t.Fatal(err)
	}
	s.setState(a3, StateFailed, nil)
	// The key keeps 3: the fourth drops its oldest finished task.
	if _, err := newTask(t, s, "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.get("a", a1, false); ok {
		t.Fatal("the oldest finished task was kept")
	}
	if _, _, ok := s.get("a", a2, false); !ok {
		t.Fatal("a newer finished task was dropped")
	}
	// 5 in all: b's tasks fill the rest; with none finished past that,
	// b's next is refused rather than dropping a running one.
	b1, _ := newTask(t, s, "b")
	b2, _ := newTask(t, s, "b")
	s.setState(b1, StateCompleted, nil)
	s.setState(b2, StateCompleted, nil)
	if total, _, _ := s.stats(); total != 5 {
		t.Fatalf("%d tasks", total)
	}
	if _, err := newTask(t, s, "c"); err != nil { // drops the oldest finished (a2)
		t.Fatal(err)
	}
	if _, _, ok := s.get("a", a2, false); ok {
		t.Fatal("the oldest finished task in all was kept")
	}
	// Finished tasks go after the TTL; running ones stay.
	clk.Advance(2 * time.Hour)
	total, byState, _ := s.stats()
	if total != 2 || byState[StateSubmitted] != 2 {
		t.Fatalf("after the TTL: %d %v", total, byState)
	}
	for _, owner := range []string{"d", "d", "e"} {
		if _, err := newTask(t, s, owner); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := newTask(t, s, "f"); !errors.Is(err, errTooManyTasks) {
		t.Fatalf("past the cap with every task running: %v", err)
	}
}
