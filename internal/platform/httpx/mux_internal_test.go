package httpx

import "testing"

// The owner walk passes over function literals whatever their names say
// about inlining.
func TestClosureNames(t *testing.T) {
	for name, want := range map[string]bool{
		"example.com/a.F.func1":                                   true,
		"example.com/a.F.func1.2":                                 true,
		"example.com/a.G.(*T).F.func3":                            true, // F inlined into G
		"example.com/a.register.func1.(*Manager).GuardedUpload.1": true, // F inlined into a literal
		"example.com/a.F":                                         false,
		"example.com/a.(*T).Register":                             false,
		"example.com/a.(*T).Run-fm":                               false,
		"example.com/a.function1":                                 false,
	} {
		if got := closure.MatchString(name); got != want {
			t.Errorf("%s: closure %v, want %v", name, got, want)
		}
	}
}
