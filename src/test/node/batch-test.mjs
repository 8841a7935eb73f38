// The official OpenAI SDK for Node as the client of llm-batch's Batch API (run by OpenAiBatchTest).
// OPENAI_BASE_URL (http://127.0.0.1:PORT/v1) and OPENAI_API_KEY (the ingest token) come from the environment.
// Prints one "ok ..." line per check; exits 1 with the failed check, 0 after "ALL CHECKS PASSED".
import OpenAI, { toFile } from 'openai';

const client = new OpenAI({ maxRetries: 0, timeout: 30_000 });
const TERMINAL = ['completed', 'failed', 'expired', 'cancelled'];

function check(condition, what, detail) {
  if (!condition) {
    console.error(`FAILED: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok ${what}`);
}

const line = (customId, body) => JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body });
const chat = (text) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'system', content: '你是公司简介的撰写助手' }, { role: 'user', content: text }],
  max_tokens: 200,
});

async function upload(name, lines) {
  const text = lines.join('\n') + '\n';
  const file = await client.files.create({ file: await toFile(Buffer.from(text, 'utf8'), name), purpose: 'batch' });
  check(file.id.startsWith('file-') && file.object === 'file' && file.purpose === 'batch' && file.filename === name
        && file.bytes === Buffer.byteLength(text) && Number.isInteger(file.created_at), `${name}: File object`, file);
  return { file, text };
}

async function until(id, statuses, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (statuses.includes(b.status)) return b;
    if (Date.now() > deadline) check(false, `batch ${id} reaches ${statuses} within ${seconds} s`, b);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const jsonl = async (fileId) => (await (await client.files.content(fileId)).text()).split('\n').filter((l) => l).map((l) => JSON.parse(l));

// 1. a batch of good lines, one line that is no chat request (no messages) and one the LLM server refuses
const good = Array.from({ length: 6 }, (_, i) => line(`ok-${i}`, chat(`北京测试科技有限公司${i}简介,字数在100-200字之间`)));
const { file: inputA, text: textA } = await upload('batch-a.jsonl', [
  ...good.slice(0, 3),
  line('no-messages', { model: 'gpt-4o-mini', prompt: 'not a chat request' }),
  ...good.slice(3),
  line('refused', chat('REFUSE-THIS-PROMPT')),
]);
check((await client.files.retrieve(inputA.id)).bytes === inputA.bytes, 'files.retrieve gives the same File object');
check(await (await client.files.content(inputA.id)).text() === textA, 'files.content gives the uploaded bytes back');

const a = await client.batches.create({ input_file_id: inputA.id, endpoint: '/v1/chat/completions', completion_window: '24h',
  metadata: { test: 't13b', purpose: 'end to end' } });
check(a.id.startsWith('batch_') && a.object === 'batch' && ['validating', 'in_progress'].includes(a.status)
      && a.input_file_id === inputA.id && a.endpoint === '/v1/chat/completions' && a.completion_window === '24h'
      && a.metadata.test === 't13b' && a.request_counts.total === 8, 'batches.create: a Batch in progress with 8 requests', a);

const doneA = await until(a.id, TERMINAL, 90);
check(doneA.status === 'completed', 'batch A completed', doneA);
check(doneA.request_counts.total === 8 && doneA.request_counts.completed === 6 && doneA.request_counts.failed === 2,
  'batch A request_counts {8, 6, 2}', doneA.request_counts);
check(doneA.output_file_id && doneA.error_file_id && doneA.completed_at >= doneA.in_progress_at && doneA.finalizing_at,
  'batch A has output and error files and its times', doneA);

const out = await jsonl(doneA.output_file_id);
check(out.length === 6 && out.map((o) => o.custom_id).join() === 'ok-0,ok-1,ok-2,ok-3,ok-4,ok-5', 'output: the 6 good lines in input order',
  out.map((o) => o.custom_id));
for (const o of out) {
  const body = o.response?.body;
  check(o.id.startsWith('batch_req_') && o.error === null && o.response.status_code === 200 && o.response.request_id
        && body.object === 'chat.completion' && body.model === 'gpt-4o-mini' && body.choices[0].message.role === 'assistant'
        && body.choices[0].message.content.length > 0 && body.choices[0].finish_reason && body.usage.total_tokens >= 0
        && typeof body.created === 'number' && body.id, `output ${o.custom_id}: a chat.completion of the asked model`, o);
}
const outputFile = await client.files.retrieve(doneA.output_file_id);
check(outputFile.purpose === 'batch_output' && outputFile.filename.endsWith('_output.jsonl'), 'output File object', outputFile);

const errs = await jsonl(doneA.error_file_id);
const byId = Object.fromEntries(errs.map((e) => [e.custom_id, e]));
check(errs.length === 2 && byId['no-messages'] && byId.refused, 'error file: the two failed lines', errs);
check(byId['no-messages'].response.status_code === 400 && byId['no-messages'].response.body.error.param === 'messages'
      && byId['no-messages'].error === null, 'error file: the line without messages is its 400', byId['no-messages']);
check(byId.refused.response.status_code === 400 && /too long/.test(byId.refused.response.body.error.message),
  'error file: the prompt the LLM server refused is its 400 with the server\'s reason', byId.refused);

// 2. a file OpenAI would refuse as a whole: the batch fails validation with its errors, nothing runs
const { file: inputB } = await upload('batch-b.jsonl', [
  good[0],
  '{"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions", "body": {',
  good[0],
  line('wrong-url', chat('x')).replace('/v1/chat/completions', '/v1/embeddings'),
]);
const b = await client.batches.create({ input_file_id: inputB.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
const failedB = await until(b.id, TERMINAL, 30);
const codes = failedB.errors?.data?.map((e) => `${e.code}@${e.line}`).join();
check(failedB.status === 'failed' && failedB.failed_at && failedB.errors.object === 'list'
      && codes === 'invalid_json_line@2,duplicate_custom_id@3,mismatched_endpoint@4', 'batch B failed validation with per-line errors',
  failedB.errors);

// 3. a batch cancelled while it runs: cancelling, then cancelled; what ran stays in the output, the rest is batch_cancelled
const many = Array.from({ length: 40 }, (_, i) => line(`c-${i}`, chat(`上海测试贸易有限公司${i}简介,字数在100-200字之间`)));
const { file: inputC } = await upload('batch-c.jsonl', many);
const c = await client.batches.create({ input_file_id: inputC.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
const cancelling = await client.batches.cancel(c.id);
check(['cancelling', 'cancelled'].includes(cancelling.status) && cancelling.cancelling_at, 'batches.cancel: cancelling', cancelling);
const cancelled = await until(c.id, TERMINAL, 90);
check(cancelled.status === 'cancelled' && cancelled.cancelled_at, 'batch C cancelled', cancelled);
check(cancelled.request_counts.total === 40 && cancelled.request_counts.completed < 40 && cancelled.request_counts.failed === 0,
  'batch C: fewer than 40 completed, none failed', cancelled.request_counts);
const ran = cancelled.output_file_id ? await jsonl(cancelled.output_file_id) : [];
const skipped = cancelled.error_file_id ? await jsonl(cancelled.error_file_id) : [];
check(ran.length === cancelled.request_counts.completed && ran.every((o) => o.response.status_code === 200),
  `batch C: the ${ran.length} lines run before the cancel are in its output`);
check(skipped.length === 40 - ran.length && skipped.length > 0 && skipped.every((e) => e.response === null && e.error.code === 'batch_cancelled'),
  `batch C: the ${skipped.length} lines not run are batch_cancelled in its error file`, skipped.slice(0, 2));
check(new Set([...ran, ...skipped].map((o) => o.custom_id)).size === 40, 'batch C: every line accounted for once');

// 4. the list, newest first, paged with limit and after
const page = await client.batches.list({ limit: 2 });
check(page.data.length === 2 && page.data[0].id === c.id && page.data[1].id === b.id && page.has_more === true,
  'batches.list: newest first, has_more', page.data.map((x) => x.id));
const next = await client.batches.list({ limit: 2, after: page.data[1].id });
check(next.data.some((x) => x.id === a.id), 'batches.list after: the older batch', next.data.map((x) => x.id));

// 5. refusals in OpenAI's shapes
try {
  await client.batches.retrieve('batch_doesnotexist');
  check(false, 'unknown batch is 404');
} catch (e) {
  check(e instanceof OpenAI.NotFoundError, 'unknown batch: NotFoundError (404)', e.message);
}
try {
  await new OpenAI({ apiKey: 'wrong-key', maxRetries: 0 }).batches.list();
  check(false, 'wrong key is 401');
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError, 'wrong key: AuthenticationError (401)', e.message);
}
try {
  await client.batches.cancel(a.id);
  check(false, 'cancelling a completed batch is refused');
} catch (e) {
  check(e instanceof OpenAI.BadRequestError, 'cancel of a completed batch: BadRequestError (400)', e.message);
}

console.log(JSON.stringify({ completed: a.id, failed: b.id, cancelled: c.id, cancelled_ran: ran.length }));
console.log('ALL CHECKS PASSED');
