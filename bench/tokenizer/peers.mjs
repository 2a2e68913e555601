// The peers of tokenizer_bench on the same text, on one core, in the same run: OpenAI's tiktoken
// (its Rust implementation as WebAssembly, `cl100k_base`, whose pre-tokenizer pattern is Llama 3's)
// and tokenizers.js (@huggingface/tokenizers, the tokenizer of transformers.js) with the same
// tokenizer.json. Each line encoded on its own; the best of several passes; one JSON line each.
//   node peers.mjs TOKENIZER_JSON TEXT_FILE [passes]
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, '../../tests/reference/node_modules');
const require = createRequire(path.join(modules, 'x.js'));
const [tokenizerFile, textFile, passesArg] = process.argv.slice(2);
const passes = Number(passesArg || 3);
const text = fs.readFileSync(textFile, 'utf8');
const lines = text.split(/(?<=\n)/);
const bytes = Buffer.byteLength(text);

function measure(name, encode) {
  let best = Infinity, tokens = 0, checksum = 0n;
  for (let p = 0; p < passes; ++p) {
    tokens = 0;
    checksum = 0n;
    const start = process.hrtime.bigint();
    for (const line of lines) {
      const ids = encode(line);
      tokens += ids.length;
    }
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  console.log(JSON.stringify({ impl: name, bytes, tokens, seconds: +best.toFixed(4),
                               mb_per_s: +(bytes / best / 1e6).toFixed(2) }));
}

const { get_encoding } = require('tiktoken');
const enc = get_encoding('cl100k_base');
measure('tiktoken cl100k_base', (s) => enc.encode(s, 'all'));
enc.free();

const { Tokenizer } = await import(pathToFileURL(path.join(modules, '@huggingface/tokenizers/dist/tokenizers.mjs')));
const tj = JSON.parse(fs.readFileSync(tokenizerFile, 'utf8'));
const configFile = path.join(path.dirname(tokenizerFile), 'tokenizer_config.json');
const config = fs.existsSync(configFile) ? JSON.parse(fs.readFileSync(configFile, 'utf8')) : {};
const tjs = new Tokenizer(tj, config);
measure('tokenizers.js', (s) => tjs.encode(s, { add_special_tokens: false }).ids);
