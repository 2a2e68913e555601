// Encodes and decodes a corpus with Hugging Face `tokenizers` (the Rust library, through its
// Node binding): the reference ids the engine's tokenizer tests compare with.
//   node tokenize.mjs TOKENIZER_JSON CORPUS_JSON OUT_JSON
// CORPUS_JSON is an array of strings. OUT_JSON gets, per string: the ids without and with the
// post-processor's tokens, the ids with special tokens read as plain text (tokenizers'
// encode_special_tokens, made here by giving the special tokens contents no text holds, which
// keeps every other added token's id), and the decodings of the ids.
import fs from 'node:fs';
import tokenizers from '@anush008/tokenizers';

const [file, corpusFile, outFile] = process.argv.slice(2);
const text = fs.readFileSync(file, 'utf8');
const json = JSON.parse(text);
const full = tokenizers.Tokenizer.fromString(text);
const added = json.added_tokens || [];
for (const t of added) {
  if (t.special) t.content = `\u0000special ${t.id}\u0000`;
}
const plain = tokenizers.Tokenizer.fromString(JSON.stringify(json));
for (const t of added) {
  if (!t.special && plain.tokenToId(t.content) !== full.tokenToId(t.content)) {
    throw new Error(`the plain-text tokenizer moved ${t.content}`);
  }
}

const corpus = JSON.parse(fs.readFileSync(corpusFile, 'utf8'));
const out = [];
for (const s of corpus) {
  const ids = (await full.encode(s, null, { addSpecialTokens: false })).getIds();
  out.push({
    ids,
    with_special: (await full.encode(s, null, { addSpecialTokens: true })).getIds(),
    plain: (await plain.encode(s, null, { addSpecialTokens: false })).getIds(),
    decoded: await full.decode(ids, false),
    decoded_skip: await full.decode(ids, true),
  });
}
fs.writeFileSync(outFile, JSON.stringify(out));
