package router

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

type recordingObserver struct{ log []string }

func (o *recordingObserver) Attempting(target string) { o.log = append(o.log, "attempt "+target) }
func (o *recordingObserver) AttemptFailed(status int) {
	o.log = append(o.log, fmt.Sprint("failed ", status))
}

// The observer hears each attempt and each failure's status, in order.
func TestAttemptObserver(t *testing.T) {
	r, tbl, fakes := setup(t)
	tbl.SetCombo(Combo{Name: "combo", Targets: []Target{{Provider: "a", Model: "m1"}, {Provider: "b", Model: "m2"}}})
	fakes["a1"].outcomes = []outcome{{err: status(500)}}
	fakes["a2"].outcomes = []outcome{{err: status(503)}}
	var o recordingObserver
	if _, err := r.Chat(WithAttemptObserver(context.Background(), &o), &llm.Request{Model: "combo"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.log, "; "); got != "attempt a/m1; failed 500; attempt a/m1; failed 503; attempt b/m2" {
		t.Fatalf("observed %q", got)
	}
}
