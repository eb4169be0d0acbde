package llm

import "context"

// Dialect names the client format a request came in: the transport marks
// the request's context with it (WithDialect), so the adapters can pass a
// same-format client's own fields through and errors go back in its shape.
type Dialect string

// The client dialects.
const (
	DialectOpenAI    Dialect = "openai"
	DialectAnthropic Dialect = "anthropic"
	DialectGemini    Dialect = "gemini"
	DialectOllama    Dialect = "ollama"
	DialectResponses Dialect = "responses"
)

type dialectKey struct{}

// WithDialect marks ctx as carrying a request whose client spoke d.
func WithDialect(ctx context.Context, d Dialect) context.Context {
	return context.WithValue(ctx, dialectKey{}, d)
}

// DialectOf returns the dialect ctx was marked with, "" when none.
func DialectOf(ctx context.Context) Dialect {
	d, _ := ctx.Value(dialectKey{}).(Dialect)
	return d
}
