// Calls the OmniRoute gateway with the official npm clients and prints
// one JSON object of what each call returned (or the error it raised).
// Run by sdk_npm_test.go; env: OMNI_BASE_URL, OMNI_KEY, OMNI_CHAT_MODEL,
// OMNI_EMBED_MODEL.
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';

const base = process.env.OMNI_BASE_URL;
const key = process.env.OMNI_KEY;
const model = process.env.OMNI_CHAT_MODEL;
const embedModel = process.env.OMNI_EMBED_MODEL;
const messages = [{ role: 'user', content: 'Say hello.' }];

const out = {};
async function run(name, fn) {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { error: String(e && e.message || e), status: e && (e.status_code ?? e.status) };
  }
}

const ollama = new Ollama({ host: base, headers: { Authorization: `Bearer ${key}` } });
await run('ollama.chat', async () => {
  const r = await ollama.chat({ model, messages, stream: false });
  return { text: r.message.content, done: r.done, prompt_eval_count: r.prompt_eval_count, eval_count: r.eval_count };
});
await run('ollama.chatStream', async () => {
  let text = '', last;
  for await (const part of await ollama.chat({ model, messages, stream: true })) {
    text += part.message.content;
    last = part;
  }
  return { text, done: last.done, prompt_eval_count: last.prompt_eval_count, eval_count: last.eval_count };
});
await run('ollama.generate', async () => {
  const r = await ollama.generate({ model, prompt: 'Say hello.', system: 'Be brief.', stream: false });
  return { text: r.response, done: r.done, prompt_eval_count: r.prompt_eval_count, eval_count: r.eval_count };
});
await run('ollama.generateStream', async () => {
  let text = '', last;
  for await (const part of await ollama.generate({ model, prompt: 'Say hello.', stream: true })) {
    text += part.response;
    last = part;
  }
  return { text, done: last.done, prompt_eval_count: last.prompt_eval_count, eval_count: last.eval_count };
});
await run('ollama.show', async () => {
  const r = await ollama.show({ model });
  return { family: r.details.family, capabilities: r.capabilities, architecture: r.model_info['general.architecture'] };
});
await run('ollama.ps', async () => ({ names: (await ollama.ps()).models.map((m) => m.name) }));
await run('ollama.list', async () => ({ names: (await ollama.list()).models.map((m) => m.name) }));
await run('ollama.embed', async () => {
  const r = await ollama.embed({ model: embedModel, input: ['a', 'b'] });
  return { vectors: r.embeddings.length, dims: r.embeddings[0].length };
});
await run('ollama.pull', async () => ollama.pull({ model: 'llama3', stream: false }));

const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0 });
await run('openai.chat', async () => {
  const r = await openai.chat.completions.create({ model, messages });
  return { text: r.choices[0].message.content, prompt_tokens: r.usage.prompt_tokens, completion_tokens: r.usage.completion_tokens };
});
await run('openai.chatStream', async () => {
  let text = '', usage;
  const stream = await openai.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, prompt_tokens: usage?.prompt_tokens, completion_tokens: usage?.completion_tokens };
});

const anthropic = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
await run('anthropic.chat', async () => {
  const r = await anthropic.messages.create({ model, max_tokens: 64, messages });
  return { text: r.content.map((b) => b.text ?? '').join(''), input_tokens: r.usage.input_tokens, output_tokens: r.usage.output_tokens };
});
await run('anthropic.chatStream', async () => {
  const stream = anthropic.messages.stream({ model, max_tokens: 64, messages });
  let text = '';
  stream.on('text', (t) => { text += t; });
  const final = await stream.finalMessage();
  return { text, input_tokens: final.usage.input_tokens, output_tokens: final.usage.output_tokens };
});

const genai = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: base } });
await run('genai.chat', async () => {
  const r = await genai.models.generateContent({ model, contents: 'Say hello.' });
  return { text: r.text, prompt_tokens: r.usageMetadata?.promptTokenCount, completion_tokens: r.usageMetadata?.candidatesTokenCount };
});
await run('genai.chatStream', async () => {
  let text = '', usage;
  for await (const chunk of await genai.models.generateContentStream({ model, contents: 'Say hello.' })) {
    text += chunk.text ?? '';
    if (chunk.usageMetadata) usage = chunk.usageMetadata;
  }
  return { text, prompt_tokens: usage?.promptTokenCount, completion_tokens: usage?.candidatesTokenCount };
});

process.stdout.write(JSON.stringify(out) + '\n');
