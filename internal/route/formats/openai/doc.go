// Package openai is the OpenAI Chat Completions wire format: the inbound
// dialect (client JSON ↔ canonical) and the outbound adapter (canonical ↔
// an OpenAI or OpenAI-compatible upstream over HTTP). Every translation
// goes through route/llm.
package openai
