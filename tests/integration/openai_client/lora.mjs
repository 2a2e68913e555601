// The official openai client against macrohardd: LoRA fine-tuning jobs (Macrohard's method.lora
// beside OpenAI's method) to succeeded, a DPO job on preference pairs with its reward metrics,
// their adapters listed as models with their base, and
// one deployment of the base answering for each adapter at once, each request through its own
// adapter; another tenant's adapter is a 404, and settings the platform does not honour are
// refused by name. Usage:
//   MH_URL=http://127.0.0.1:PORT MH_API_KEY=mh_live_… MH_OTHER_API_KEY=mh_live_… \
//       node lora.mjs BASE_MODEL TRAINING_FILE_ID
import assert from 'node:assert/strict';
import OpenAI, { toFile } from 'openai';
import { deploy, waitForJob } from './platform.mjs';

const options = { baseURL: `${process.env.MH_URL}/v1`, maxRetries: 0 };
const client = new OpenAI({ ...options, apiKey: process.env.MH_API_KEY });
const other = new OpenAI({ ...options, apiKey: process.env.MH_OTHER_API_KEY });
const [base, trainingFile] = process.argv.slice(2);

const refused = async (method, param) => {
  await assert.rejects(
    client.fineTuning.jobs.create({ model: base, training_file: trainingFile, method }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.param, param, e.message);
      return true;
    });
};
await refused({ type: 'grpo' }, 'method.type');
await refused({ type: 'supervised', lora: { rank: 0 } }, 'method.lora.rank');
await refused({ type: 'supervised', lora: { target_modules: ['c_attn'] } },
              'method.lora.target_modules');  // a gpt2 module; this base is a llama
await refused({ type: 'supervised', lora: { use_dora: true } }, 'method.lora.use_dora');
// DPO's passes run without dropout: a dropout asked for would not be honoured.
await refused({ type: 'dpo', lora: { dropout: 0.1 } }, 'method.lora.dropout');

// Three adapters of one base, of different ranks, layers and learning rates.
const settings = [
  { lora: { rank: 2 }, multiplier: 20 },
  { lora: { rank: 4, alpha: 16, target_modules: ['q_proj', 'v_proj', 'down_proj'] },
    multiplier: 40 },
  { lora: { rank: 8, dropout: 0.1, target_modules: 'all-linear' }, multiplier: 60 },
];
const created = [];
for (const [i, s] of settings.entries()) {
  const job = await client.fineTuning.jobs.create({
    model: base,
    training_file: trainingFile,
    suffix: `lora${i}`,
    seed: 100 + i,
    method: {
      type: 'supervised',
      supervised: { hyperparameters: { n_epochs: 3, batch_size: 2,
                                       learning_rate_multiplier: s.multiplier } },
      lora: s.lora,
    },
  });
  assert.equal(job.method.type, 'supervised');
  assert.equal(job.method.lora.rank, s.lora.rank, JSON.stringify(job.method));
  created.push(job);
}
assert.equal(created[0].method.lora.alpha, 4, 'alpha defaults to twice the rank');
assert.equal(created[0].method.lora.target_modules, 'all-linear');
assert.deepEqual(created[1].method.lora.target_modules, ['q_proj', 'v_proj', 'down_proj']);

const adapters = [];
for (const job of created) {
  const current = await waitForJob(client, job);
  assert.equal(current.status, 'succeeded', JSON.stringify(current));
  const model = await client.models.retrieve(current.fine_tuned_model);
  assert.equal(model.parent, base, JSON.stringify(model));
  assert.equal(model.root, base);
  adapters.push(current.fine_tuned_model);
}
const listed = new Map();
for await (const m of client.models.list()) listed.set(m.id, m);
for (const a of adapters) assert.equal(listed.get(a)?.parent, base);
assert.equal(listed.get(base).parent, null);

// DPO on preference pairs in OpenAI's format, with a LoRA adapter (the reference is the base).
const pairs = [];
for (let i = 0; i < 12; i++) {
  pairs.push(JSON.stringify({
    input: { messages: [{ role: 'user', content: `where did the cat sit ${i}?` }] },
    preferred_output: [{ role: 'assistant', content: 'on the mat' }],
    non_preferred_output: [{ role: 'assistant', content: 'the hat sat on the cat' }],
  }));
}
const preferences = await client.files.create({
  file: await toFile(Buffer.from(pairs.join('\n') + '\n'), 'preferences.jsonl'),
  purpose: 'fine-tune',
});
// A file of supervised examples is no DPO data, and the other way round: refused by name.
await assert.rejects(
  client.fineTuning.jobs.create({ model: base, training_file: trainingFile,
                                  method: { type: 'dpo', lora: {} } }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === 'training_file');
await assert.rejects(
  client.fineTuning.jobs.create({ model: base, training_file: preferences.id }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === 'training_file');
const dpoJob = await client.fineTuning.jobs.create({
  model: base,
  training_file: preferences.id,
  validation_file: preferences.id,
  suffix: 'dpo',
  method: {
    type: 'dpo',
    dpo: { hyperparameters: { beta: 0.5, n_epochs: 5, batch_size: 4,
                              learning_rate_multiplier: 30 } },
    lora: { rank: 4 },
  },
});
assert.equal(dpoJob.method.type, 'dpo');
assert.equal(dpoJob.method.dpo.hyperparameters.beta, 0.5);
const dpo = await waitForJob(client, dpoJob);
assert.equal(dpo.status, 'succeeded', JSON.stringify(dpo));
const metrics = [];
for await (const e of client.fineTuning.jobs.listEvents(dpo.id, { limit: 100 })) {
  if (e.type === 'metrics') metrics.push(e.data);
}
assert.ok(metrics.length >= 2, JSON.stringify(metrics));
metrics.sort((a, b) => a.step - b.step);
assert.ok(Math.abs(metrics[0].train_loss - Math.log(2)) < 1e-3,
          `DPO starts at log 2 (the policy is the reference): ${JSON.stringify(metrics[0])}`);
const last = metrics[metrics.length - 1];
assert.ok(last.reward_margin > 0 && last.reward_accuracy > 0.5, JSON.stringify(last));
assert.equal((await client.models.retrieve(dpo.fine_tuned_model)).parent, base);
const dpoCheckpoints = [];
for await (const c of client.fineTuning.jobs.checkpoints.list(dpo.id)) dpoCheckpoints.push(c);
assert.ok(dpoCheckpoints[0].metrics.valid_loss < Math.log(2),
          `DPO's validation loss fell below log 2: ${JSON.stringify(dpoCheckpoints[0])}`);

// An adapter is not trained further: its base is.
await assert.rejects(
  client.fineTuning.jobs.create({ model: adapters[0], training_file: trainingFile }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === 'model');

// One deployment of the base (Macrohard's own call, made with fetch).
await deploy(base);

const messages = [{ role: 'user', content: 'the cat sat on the' }];
const ask = async (model) => {
  const chat = await client.chat.completions.create({
    model, messages, max_tokens: 8, temperature: 0, ignore_eos: true,
  });
  assert.equal(chat.model, model);
  return chat.choices[0].message.content;
};
// Each alone, then all at once (they decode in one batch, each through its own adapter).
const names = [base, ...adapters];
const alone = [];
for (const name of names) alone.push(await ask(name));
const together = await Promise.all(names.map(ask));
assert.deepEqual(together, alone, 'in one batch, each answers as it does alone');
assert.equal(new Set(alone).size, names.length,
             `every adapter answers differently from the base and the others: ${JSON.stringify(alone)}`);

const streamed = await client.chat.completions.create({
  model: adapters[1], messages, max_tokens: 8, temperature: 0, ignore_eos: true, stream: true,
});
let text = '';
for await (const chunk of streamed) text += chunk.choices[0]?.delta?.content ?? '';
assert.equal(text, alone[2], 'streamed through the adapter too');
const completion = await client.completions.create({
  model: adapters[2], prompt: 'the cat', max_tokens: 4, temperature: 0,
});
assert.equal(completion.model, adapters[2]);

// Another tenant cannot name these adapters: to it they do not exist.
await assert.rejects(other.chat.completions.create({ model: adapters[0], messages }),
                     (e) => e instanceof OpenAI.NotFoundError);
await assert.rejects(other.models.retrieve(adapters[0]),
                     (e) => e instanceof OpenAI.NotFoundError);

console.log(`openai client: ${adapters.length} LoRA adapters served by one deployment of ` +
            `${base}: ${JSON.stringify(alone)}: ok`);
