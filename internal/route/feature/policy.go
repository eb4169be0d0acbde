package feature

import "context"

// ModelPolicy is the gateway transport's side of a key's policy for the
// endpoints of a modality that choose targets themselves (a search naming
// no provider tries the search providers the key may use; its provider
// list shows only those): whether the gateway key of the request whose
// context is ctx may use model, asked without running or counting a call.
type ModelPolicy interface {
	// PermitsModel returns the refusal (an *llm.Error 403) when the key
	// may not use model, nil when it may.
	PermitsModel(ctx context.Context, model string) error
}
