// The official openai client asks deployed models (random weights, published tokenizers) for
// structured outputs: every json_schema answer that ends ("stop") validates against its schema
// by Ajv, streamed or not, for schemas with nested objects, arrays, enums, numbers, unions,
// recursion, required and optional fields; a schema the server cannot honour is refused by name.
// Usage:
//   MH_URL=http://127.0.0.1:PORT MH_API_KEY=mh_live_… node structured.mjs MODEL...
import assert from 'node:assert/strict';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { deploy } from './platform.mjs';

const client = new OpenAI({ baseURL: `${process.env.MH_URL}/v1`, apiKey: process.env.MH_API_KEY,
                            maxRetries: 0 });
const ajv = new Ajv({ allErrors: true });

// Strings are bounded: a model with random weights rarely picks a closing quote.
const schemas = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 10 },
      age: { type: 'integer' },
      height: { type: 'number' },
      role: { enum: ['admin', 'user', 'guest'] },
      tags: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 3 },
      address: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 12 }, zip: { type: 'string', maxLength: 6 } },
        required: ['city', 'zip'],
        additionalProperties: false,
      },
      nickname: { type: 'string', maxLength: 8 },
      verified: { type: 'boolean' },
    },
    required: ['name', 'age', 'height', 'role', 'tags', 'address'],
    additionalProperties: false,
  },
  todo: {
    type: 'object',
    properties: {
      items: {
        type: 'array', minItems: 1, maxItems: 4,
        items: {
          type: 'object',
          properties: { id: { type: 'integer' }, done: { type: 'boolean' },
                        note: { anyOf: [{ type: 'string', maxLength: 6 }, { type: 'null' }] } },
          required: ['id', 'done', 'note'],
          additionalProperties: false,
        },
      },
      priority: { type: ['integer', 'null'] },
    },
    required: ['items', 'priority'],
    additionalProperties: false,
  },
  tree: {
    $defs: {
      node: {
        type: 'object',
        properties: { value: { type: 'number' },
                      children: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 1 } },
        required: ['value', 'children'],
        additionalProperties: false,
      },
    },
    $ref: '#/$defs/node',
  },
  choice: {
    type: 'object',
    properties: { answer: { const: 'yes' }, confidence: { enum: [0.5, 1, 'high', null] } },
    required: ['answer', 'confidence'],
  },
};

const messages = [{ role: 'user', content: 'Answer in JSON.' }];
let answers = 0;

for (const model of process.argv.slice(2)) {
  const deployment = await deploy(model);
  for (const [name, schema] of Object.entries(schemas)) {
    const validate = ajv.compile(schema);
    const response_format = { type: 'json_schema', json_schema: { name, strict: true, schema } };
    for (const seed of [1, 2, 3]) {
      const request = { model: deployment.id, messages, response_format, seed, temperature: 1,
                        max_tokens: 400 };
      const chat = await client.chat.completions.create(request);
      const content = chat.choices[0].message.content;
      assert.equal(chat.choices[0].finish_reason, 'stop', `${model} ${name}: ${content}`);
      assert.ok(validate(JSON.parse(content)),
                `${model} ${name}: ${content}: ${ajv.errorsText(validate.errors)}`);
      // Streamed with the same seed: the same answer, in pieces.
      let streamed = '';
      let finish = null;
      for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
        streamed += chunk.choices[0]?.delta?.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(streamed, content, `${model} ${name}: streamed`);
      assert.equal(finish, 'stop');
      if (seed === 1) console.log(`${model} ${name}: ${content}`);
      answers += 1;
    }
  }
  // n: 3 choices of one prompt, each held to the schema, with their log-probabilities.
  const three = await client.chat.completions.create({
    model: deployment.id, messages, n: 3, seed: 9, temperature: 1, max_tokens: 400,
    logprobs: true, top_logprobs: 2,
    response_format: { type: 'json_schema',
                       json_schema: { name: 'todo', strict: true, schema: schemas.todo } } });
  assert.deepEqual(three.choices.map((c) => c.index), [0, 1, 2]);
  const validateTodo = ajv.compile(schemas.todo);
  for (const choice of three.choices) {
    assert.equal(choice.finish_reason, 'stop');
    assert.ok(validateTodo(JSON.parse(choice.message.content)), choice.message.content);
    const tokens = choice.logprobs.content;
    assert.equal(tokens.map((t) => Buffer.from(t.bytes)).reduce(
      (a, b) => Buffer.concat([a, b]), Buffer.alloc(0)).toString(), choice.message.content,
                 'the tokens\' bytes spell the answer');
    for (const t of tokens) {
      assert.ok(t.logprob <= 0 && t.top_logprobs.length === 2);
    }
  }
  assert.equal(three.usage.completion_tokens, three.choices.reduce(
    (sum, c) => sum + c.logprobs.content.length, 0));

  // json_object: an object, when the model ends it within the tokens it was given.
  const object = await client.chat.completions.create({
    model: deployment.id, messages, response_format: { type: 'json_object' }, seed: 4,
    max_tokens: 60 });
  const text = object.choices[0].message.content;
  assert.ok(text.startsWith('{'), text);
  if (object.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(text), 'object');
}

// Schemas the grammar cannot express are refused, saying what and where.
const refused = async (schema, words) => {
  await assert.rejects(
    client.chat.completions.create({
      model: process.argv[2], messages,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.param, 'response_format.json_schema.schema');
      assert.ok(e.message.includes(words), e.message);
      return true;
    });
};
await refused({ type: 'string', pattern: '^[a-z]+$' }, "'pattern' is not supported");
await refused({ type: 'object', properties: { n: { type: 'integer', minimum: 0 } } },
              '#/properties/n');

console.log(`openai client: ${answers} structured answers validated: ok`);
