package router

import "context"

// AttemptObserver hears of a request's upstream attempts as they are
// made (the progress events of X-OmniRoute-Progress). It is called on the
// goroutine running the request; it must not block, and it is told
// target names and statuses only, never error bodies.
type AttemptObserver interface {
	// Attempting is called before an attempt goes to target
	// ("provider/model"); attempts a health tracker vetoes are not told.
	Attempting(target string)
	// AttemptFailed is called when that attempt failed with status (0
	// when none was received) and another may follow.
	AttemptFailed(status int)
}

type observerKey struct{}

// WithAttemptObserver returns ctx whose Chat, Stream, Embed and Do calls
// tell o of their attempts.
func WithAttemptObserver(ctx context.Context, o AttemptObserver) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

func observerOf(ctx context.Context) AttemptObserver {
	o, _ := ctx.Value(observerKey{}).(AttemptObserver)
	return o
}
