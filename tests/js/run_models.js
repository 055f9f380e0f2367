// Load TF.js models over HTTP with @tensorflow/tfjs (pure JS, CPU backend) and run them.
//
//   node run_models.js JOBS.json
//
// JOBS.json: {"root": DIR, "jobs": [{"id", "model": "sub/dir/model.json", "kind": "layers"|"graph",
//             "inputs": [{"name", "dtype": "float32"|"int32", "shape": [...], "file": "x.bin"}],
//             "repeat": 0}]}
// Input files are raw little-endian values relative to "root". The script serves "root" on
// 127.0.0.1 (so TF.js uses the same fetch-based loader as in a browser), loads every model and
// prints one JSON line per job: {"id", "outputs": [{"name", "shape", "data": base64 float32}],
// "latency_ms": median of "repeat" timed predictions after a warm-up} or {"id", "error": message}.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');

// TF.js prints a banner suggesting tfjs-node; keep stdout for our JSON lines.
const log = console.log;
console.log = (...args) => console.error(...args);
console.warn = (...args) => console.error(...args);
const tf = require('@tensorflow/tfjs');

function serve(root) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
    const file = path.resolve(root, rel);
    if (!file.startsWith(path.resolve(root) + path.sep) || !fs.existsSync(file)) {
      res.writeHead(404);
      res.end('not found');
      return;
    }
    // No keep-alive: a pooled socket the server closes while a long job runs makes the next fetch fail.
    res.writeHead(200, {'Content-Type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream',
                        'Connection': 'close'});
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function readTensor(root, spec) {
  const buf = fs.readFileSync(path.join(root, spec.file));
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const data = spec.dtype === 'int32' ? new Int32Array(ab) : new Float32Array(ab);
  return tf.tensor(data, spec.shape, spec.dtype);
}

function encode(t) {
  const values = Float32Array.from(t.dataSync());
  return Buffer.from(values.buffer).toString('base64');
}

async function runJob(base, root, job) {
  const url = `${base}/${job.model}`;
  const inputs = job.inputs.map((s) => readTensor(root, s));
  let model;
  let predict;
  let outputNames;
  if (job.kind === 'graph') {
    model = await tf.loadGraphModel(url);
    const feeds = {};
    job.inputs.forEach((s, i) => { feeds[s.name] = inputs[i]; });
    outputNames = model.outputNodes;
    predict = () => model.execute(feeds, outputNames);
  } else {
    model = await tf.loadLayersModel(url);
    const byName = {};
    job.inputs.forEach((s, i) => { byName[s.name] = inputs[i]; });
    // A Sequential model may name its input differently; feed it in job order then.
    const known = model.inputNames.length > 0 && model.inputNames.every((n) => n in byName);
    const names = known ? model.inputNames : job.inputs.map((s) => s.name);
    const ordered = names.map((n) => byName[n]);
    if (ordered.some((t) => t === undefined)) {
      throw new Error(`inputs ${JSON.stringify(model.inputNames)} expected, got ${JSON.stringify(Object.keys(byName))}`);
    }
    outputNames = model.outputNames;
    predict = () => model.predict(ordered.length === 1 ? ordered[0] : ordered);
  }
  let out = predict();
  out = Array.isArray(out) ? out : [out];
  const result = {
    id: job.id,
    outputs: out.map((t, i) => ({name: outputNames[i], shape: t.shape, data: encode(t)})),
  };
  tf.dispose(out);
  if (job.repeat > 0) {
    // Warm up (kernel JIT, allocator) before timing, so the order of the jobs does not matter.
    for (let i = 0; i < Math.max(5, job.repeat / 5); i++) tf.dispose(predict());
    const times = [];
    for (let i = 0; i < job.repeat; i++) {
      const t0 = process.hrtime.bigint();
      const y = predict();
      (Array.isArray(y) ? y : [y]).forEach((t) => t.dataSync());
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      tf.dispose(y);
    }
    times.sort((a, b) => a - b);
    result.latency_ms = times[Math.floor(times.length / 2)];
  }
  tf.dispose(inputs);
  model.dispose();
  return result;
}

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  await tf.setBackend('cpu');
  const server = await serve(spec.root);
  const base = `http://127.0.0.1:${server.address().port}`;
  for (const job of spec.jobs) {
    let line;
    try {
      line = await runJob(base, spec.root, job);
    } catch (e) {
      const cause = e && e.cause ? ` (${e.cause.message || e.cause})` : '';
      line = {id: job.id, error: String(e && e.message ? e.message : e) + cause};
    }
    log(JSON.stringify(line));
  }
  server.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
