// The official openai client against macrohardd's fine-tuning API: create a job on a training
// file, follow it to succeeded, page through its events, list jobs and models, and the errors
// for a missing job. Usage:
//   MH_URL=http://127.0.0.1:PORT MH_API_KEY=mh_live_… node fine_tuning.mjs MODEL TRAINING_FILE_ID
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: `${process.env.MH_URL}/v1`,
  apiKey: process.env.MH_API_KEY,
  maxRetries: 0,
});
const [model, trainingFile] = process.argv.slice(2);

const job = await client.fineTuning.jobs.create({
  model,
  training_file: trainingFile,
  suffix: 'npm',
  hyperparameters: { n_epochs: 2, batch_size: 'auto', learning_rate_multiplier: 'auto' },
});
assert.equal(job.object, 'fine_tuning.job');
assert.match(job.id, /^ftjob-/);
assert.equal(job.training_file, trainingFile);

let current = job;
for (let i = 0; i < 1200 && !['succeeded', 'failed', 'cancelled'].includes(current.status); i++) {
  await new Promise((r) => setTimeout(r, 100));
  current = await client.fineTuning.jobs.retrieve(job.id);
}
assert.equal(current.status, 'succeeded', JSON.stringify(current));
assert.match(current.fine_tuned_model, /^ft:.*:npm:/);

const events = [];
for await (const e of client.fineTuning.jobs.listEvents(job.id, { limit: 5 })) events.push(e);
assert.ok(events.length > 5, 'the client followed the pages of events');
assert.equal(events[0].object, 'fine_tuning.job.event');
assert.ok(events.some((e) => e.type === 'metrics' && e.data.train_loss > 0));

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
console.log(`openai client: fine-tuning job ${current.status}, ${events.length} events, ` +
            `model ${current.fine_tuned_model}: ok`);
