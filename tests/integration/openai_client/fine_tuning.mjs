// The official openai client against macrohardd: create a fine-tuning job on a training file
// (a training method the platform does not run is refused by name), follow it to succeeded, page
// through its events and checkpoints, list jobs and models, deploy
// the model it made (a Macrohard call, made with fetch), then ask it for chat completions with
// and without streaming, and a completion. With PROMPT_TOKENS, the chat's usage.prompt_tokens
// must be that (the reference's token count of the chat template's rendering). Usage:
//   MH_URL=http://127.0.0.1:PORT MH_API_KEY=mh_live_… node fine_tuning.mjs MODEL TRAINING_FILE_ID
//       [PROMPT_TOKENS]
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { deploy, waitForJob } from './platform.mjs';

const client = new OpenAI({
  baseURL: `${process.env.MH_URL}/v1`,
  apiKey: process.env.MH_API_KEY,
  maxRetries: 0,
});
const [model, trainingFile, promptTokens] = process.argv.slice(2);

// A training method the platform does not run is refused by name, never run as another.
for (const method of [{ type: 'reinforcement' }, { type: 'grpo' }]) {
  await assert.rejects(
    client.fineTuning.jobs.create({ model, training_file: trainingFile, method }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.param, 'method.type');
      return true;
    });
}

const job = await client.fineTuning.jobs.create({
  model,
  training_file: trainingFile,
  suffix: 'npm',
  method: {
    type: 'supervised',
    supervised: { hyperparameters: { n_epochs: 2, batch_size: 2, learning_rate_multiplier: 'auto' } },
  },
});
assert.equal(job.object, 'fine_tuning.job');
assert.match(job.id, /^ftjob-/);
assert.equal(job.training_file, trainingFile);
assert.equal(job.method.type, 'supervised');
assert.deepEqual(job.method.supervised.hyperparameters,
                 { n_epochs: 2, batch_size: 2, learning_rate_multiplier: 1 });
assert.equal(job.hyperparameters.batch_size, 2, 'the deprecated field says the same');

const current = await waitForJob(client, job, 1200);
assert.equal(current.status, 'succeeded', JSON.stringify(current));
assert.match(current.fine_tuned_model, /^ft:.*:npm:/);

const events = [];
for await (const e of client.fineTuning.jobs.listEvents(job.id, { limit: 5 })) events.push(e);
assert.ok(events.length > 5, 'the client followed the pages of events');
assert.equal(events[0].object, 'fine_tuning.job.event');
assert.ok(events.some((e) => e.type === 'metrics' && e.data.train_loss > 0));
assert.ok(events.every((e) => e.type !== 'metrics' ||
                              (e.data.train_mean_token_accuracy >= 0 &&
                               e.data.train_mean_token_accuracy <= 1)),
          'each metrics event has the share of tokens the model ranked first');

const jobs = [];
for await (const j of client.fineTuning.jobs.list()) jobs.push(j.id);
assert.ok(jobs.includes(job.id));
const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.includes(current.fine_tuned_model));

await assert.rejects(client.fineTuning.jobs.retrieve('ftjob-missing'), (e) => {
  assert.ok(e instanceof OpenAI.NotFoundError);
  return true;
});

const checkpoints = [];
for await (const c of client.fineTuning.jobs.checkpoints.list(job.id)) checkpoints.push(c);
assert.ok(checkpoints.length >= 1);
assert.equal(checkpoints[0].object, 'fine_tuning.job.checkpoint');
assert.ok(checkpoints[0].metrics.train_loss > 0);
assert.ok(checkpoints[0].fine_tuned_model_checkpoint.startsWith(current.fine_tuned_model));

// Deployments are Macrohard's own API, reached with fetch.
const deployment = await deploy(current.fine_tuned_model);

const messages = [{ role: 'user', content: 'the cat sat on the' }];
const chat = await client.chat.completions.create({
  model: current.fine_tuned_model, messages, max_tokens: 8, temperature: 0,
});
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(typeof chat.choices[0].message.content, 'string');
assert.ok(chat.usage.prompt_tokens > 0);
if (promptTokens !== undefined) assert.equal(chat.usage.prompt_tokens, Number(promptTokens));

const stream = await client.chat.completions.create({
  model: current.fine_tuned_model, messages, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let streamed = '';
let finish = null;
let usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    streamed += choice.delta.content ?? '';
    finish = choice.finish_reason ?? finish;
  }
}
assert.equal(streamed, chat.choices[0].message.content, 'greedy: the same text either way');
assert.equal(finish, chat.choices[0].finish_reason);
assert.equal(usage.completion_tokens, chat.usage.completion_tokens);

const completion = await client.completions.create({
  model: deployment.id, prompt: 'the cat', max_tokens: 4,
});
assert.equal(completion.object, 'text_completion');
await assert.rejects(
  client.chat.completions.create({ model: 'custom:nothing-deployed', messages }),
  (e) => e instanceof OpenAI.NotFoundError);
console.log(`openai client: fine-tuning job ${current.status}, ${events.length} events, ` +
            `${checkpoints.length} checkpoints, model ${current.fine_tuned_model} deployed, ` +
            `chat ${JSON.stringify(chat.choices[0].message.content)}: ok`);
