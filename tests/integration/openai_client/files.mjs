// The official openai client against macrohardd's files API: upload, list, retrieve,
// download, delete, and the not-found error after. Usage:
//   MH_URL=http://127.0.0.1:PORT MH_API_KEY=mh_live_… node files.mjs data.jsonl
import fs from 'node:fs';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: `${process.env.MH_URL}/v1`,
  apiKey: process.env.MH_API_KEY,
  maxRetries: 0,
});
const path = process.argv[2];
const bytes = fs.readFileSync(path);

const file = await client.files.create({ file: fs.createReadStream(path), purpose: 'fine-tune' });
assert.equal(file.object, 'file');
assert.equal(file.purpose, 'fine-tune');
assert.equal(file.bytes, bytes.length);
assert.match(file.id, /^file-/);

const listed = [];
for await (const f of client.files.list({ limit: 2 })) listed.push(f.id);
assert.ok(listed.includes(file.id), `the list holds ${file.id}`);

const retrieved = await client.files.retrieve(file.id);
assert.equal(retrieved.filename, path.split('/').pop());

const content = await client.files.content(file.id);
assert.equal(Buffer.from(await content.arrayBuffer()).compare(bytes), 0);

const deleted = await client.files.delete(file.id);
assert.equal(deleted.deleted, true);

await assert.rejects(client.files.retrieve(file.id), (e) => {
  assert.ok(e instanceof OpenAI.NotFoundError);
  assert.equal(e.status, 404);
  return true;
});
console.log(`openai ${OpenAI.VERSION ?? ''} client: upload, list (${listed.length}), retrieve, content, delete: ok`);
