// What the tests' scripts share: following a fine-tuning job to its end with the official
// client, and a deployment (Macrohard's own API, called with fetch) until it is ready.
import assert from 'node:assert/strict';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The job, retrieved until it has succeeded, failed or been cancelled (or `tries` × 100 ms).
export async function waitForJob(client, job, tries = 1800) {
  let current = job;
  for (let i = 0; i < tries && !['succeeded', 'failed', 'cancelled'].includes(current.status);
       i++) {
    await sleep(100);
    current = await client.fineTuning.jobs.retrieve(job.id);
  }
  return current;
}

// A deployment of `model` for the key in MH_API_KEY, once it is ready.
export async function deploy(model) {
  const headers = { Authorization: `Bearer ${process.env.MH_API_KEY}`,
                    'Content-Type': 'application/json' };
  let deployment = await (await fetch(`${process.env.MH_URL}/v1/deployments`, {
    method: 'POST', headers, body: JSON.stringify({ model }),
  })).json();
  assert.match(deployment.id ?? '', /^dep-/, JSON.stringify(deployment));
  for (let i = 0; i < 600 && deployment.status !== 'ready'; i++) {
    await sleep(100);
    deployment = await (await fetch(`${process.env.MH_URL}/v1/deployments/${deployment.id}`,
                                    { headers })).json();
  }
  assert.equal(deployment.status, 'ready', JSON.stringify(deployment));
  return deployment;
}
