package control

import (
	"strings"
	"testing"
	"time"
)

func TestDNSLabel(t *testing.T) {
	for in, want := range map[string]string{
		"Robot Arm #1":           "robot-arm-1",
		"  --laptop--  ":         "laptop",
		"Jörg's MacBook Pro":     "j-rg-s-macbook-pro",
		"ünïcödé":                "n-c-d",
		"日本":                     "device",
		"":                       "device",
		"a..b__c":                "a-b-c",
		strings.Repeat("x", 100): strings.Repeat("x", 56),
	} {
		if got := DNSLabel(in, "device"); got != want {
			t.Errorf("DNSLabel(%q) = %q, want %q", in, got, want)
		}
		if err := validLabel("device", DNSLabel(in, "device")); err != nil {
			t.Errorf("a derived label is not valid: %v", err)
		}
	}
}

// Labels are unique: explicit ones claim theirs first, derived ones take
// -2, -3, … in join order, and two members that chose the same label (a
// race between two writes) still end up with different names.
func TestMemberLabelsUnique(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	ms := []Membership{
		{DeviceID: "d1", Host: 1, JoinedAt: t0},
		{DeviceID: "d2", Host: 2, JoinedAt: t0.Add(time.Second)},
		{DeviceID: "d3", Host: 3, JoinedAt: t0.Add(2 * time.Second)},
		{DeviceID: "d4", Host: 4, JoinedAt: t0.Add(3 * time.Second)},
		{DeviceID: "d5", Host: 5, JoinedAt: t0.Add(4 * time.Second)},
	}
	devs := []Device{
		{ID: "d1", Name: "robot"},
		{ID: "d2", Name: "Robot"},
		{ID: "d3", Name: "x", DNSName: "robot"}, // explicit: wins over the earlier derived ones
		{ID: "d4", Name: "y", DNSName: "arm"},
		{ID: "d5", Name: "z", DNSName: "arm"}, // the same explicit label, later
	}
	got := memberLabels(ms, devs)
	want := []string{"robot-2", "robot-3", "robot", "arm", "arm-2"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("labels = %v, want %v", got, want)
		}
	}
}
