// The official openai client calls tools through deployed models (random weights, published
// tokenizers and chat templates: Llama 3.1's JSON calls, Qwen3's <tool_call> tags): with
// tool_choice "required" and a named function every answer is calls whose arguments validate
// (Ajv) against the function's parameters, streamed as tool_call deltas and whole alike; "auto"
// answers text or calls; parallel_tool_calls false makes one call; a conversation goes on with
// the tool's reply. Usage:
//   MH_URL=http://127.0.0.1:PORT MH_API_KEY=mh_live_… node tools.mjs MODEL...
import assert from 'node:assert/strict';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { deploy } from './platform.mjs';

const client = new OpenAI({ baseURL: `${process.env.MH_URL}/v1`, apiKey: process.env.MH_API_KEY,
                            maxRetries: 0 });
const ajv = new Ajv({ allErrors: true });

const tools = [
  { type: 'function',
    function: {
      name: 'get_weather', description: 'The weather in a city.', strict: true,
      parameters: { type: 'object',
                    properties: { city: { type: 'string', minLength: 1, maxLength: 12 },
                                  unit: { enum: ['celsius', 'fahrenheit'] } },
                    required: ['city', 'unit'], additionalProperties: false } } },
  { type: 'function',
    function: {
      name: 'get_time', description: 'The time in a zone.',
      parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 8 } },
                    additionalProperties: false } } },
];
const validators = new Map(tools.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));
const messages = [{ role: 'user', content: 'What is the weather in Oslo?' }];

// Checks one answer's calls; returns them.
const checkCalls = (message, finish, where) => {
  assert.equal(finish, 'tool_calls', `${where}: ${JSON.stringify(message)}`);
  assert.ok(message.tool_calls.length >= 1, where);
  for (const call of message.tool_calls) {
    assert.match(call.id, /^call_/);
    assert.equal(call.type, 'function');
    const validate = validators.get(call.function.name);
    assert.ok(validate, `${where}: no tool ${call.function.name}`);
    assert.ok(validate(JSON.parse(call.function.arguments)),
              `${where}: ${call.function.arguments}: ${ajv.errorsText(validate.errors)}`);
  }
  return message.tool_calls;
};

// A streamed answer put back together from its deltas.
const streamed = async (request) => {
  const calls = [];
  let content = '';
  let finish = null;
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    content += choice.delta?.content ?? '';
    for (const d of choice.delta?.tool_calls ?? []) {
      calls[d.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
      if (d.id) calls[d.index].id = d.id;
      calls[d.index].function.name += d.function?.name ?? '';
      calls[d.index].function.arguments += d.function?.arguments ?? '';
    }
    finish = choice.finish_reason ?? finish;
  }
  return { message: { content: content || null, tool_calls: calls }, finish };
};

let answers = 0;
for (const model of process.argv.slice(2)) {
  const deployment = await deploy(model);
  const base = { model: deployment.id, messages, tools, temperature: 1, max_tokens: 300 };
  for (const seed of [1, 2, 3]) {
    const request = { ...base, tool_choice: 'required', seed };
    const whole = await client.chat.completions.create(request);
    const calls = checkCalls(whole.choices[0].message, whole.choices[0].finish_reason,
                             `${model} required`);
    assert.equal(whole.choices[0].message.content, null);
    const parts = await streamed(request);
    const again = checkCalls(parts.message, parts.finish, `${model} required, streamed`);
    assert.deepEqual(again.map((c) => c.function), calls.map((c) => c.function),
                     'the same seed calls the same, streamed or not');
    if (seed === 1) console.log(`${model}: ${JSON.stringify(calls.map((c) => c.function))}`);

    const named = await client.chat.completions.create({
      ...base, seed, tool_choice: { type: 'function', function: { name: 'get_time' } } });
    for (const call of checkCalls(named.choices[0].message, named.choices[0].finish_reason,
                                  `${model} named`)) {
      assert.equal(call.function.name, 'get_time');
    }
    const single = await client.chat.completions.create({
      ...request, parallel_tool_calls: false });
    assert.equal(checkCalls(single.choices[0].message, single.choices[0].finish_reason,
                            `${model} one call`).length, 1);

    // The conversation goes on with the tool's reply (one call: Llama 3.1 takes one a turn).
    const call = calls[0];
    const followUp = [...messages,
                      { role: 'assistant', content: null, tool_calls: [call] },
                      { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' }];
    const reply = await client.chat.completions.create({
      ...base, messages: followUp, seed, max_tokens: 12 });
    assert.ok(['stop', 'length', 'tool_calls'].includes(reply.choices[0].finish_reason));
    const plain = await client.chat.completions.create({
      ...base, messages: followUp, seed, max_tokens: 12, tool_choice: 'none' });
    assert.equal(plain.choices[0].message.tool_calls, undefined);
    assert.equal(typeof plain.choices[0].message.content, 'string');

    // auto: text or calls, as the model writes them.
    const auto = await client.chat.completions.create({ ...base, seed, max_tokens: 40 });
    if (auto.choices[0].finish_reason === 'tool_calls') {
      checkCalls(auto.choices[0].message, 'tool_calls', `${model} auto`);
    } else {
      assert.equal(typeof auto.choices[0].message.content, 'string');
    }
    answers += 1;
  }
}

// What a call cannot be held to, or names nothing, is refused by name.
const refused = async (extra, param) => {
  await assert.rejects(
    client.chat.completions.create({ model: process.argv[2], messages, tools, ...extra }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.param, param, e.message);
      return true;
    });
};
await refused({ tool_choice: { type: 'function', function: { name: 'get_news' } } }, 'tool_choice');
await refused({ tools: [{ type: 'function', function: { name: 'f', parameters: {
  type: 'object', properties: { when: { type: 'string', format: 'date-time' } } } } }],
                tool_choice: 'required' }, 'tools');
await refused({ response_format: { type: 'json_object' } }, 'response_format');

console.log(`openai client: ${answers} rounds of tool calls checked: ok`);
