// Reference outputs of face-api's original TF.js nets, for mien's PyTorch port (tests/test_faceapi.py).
//
// Runs @vladmandic/face-api (MIT; Vincent Mühler / Vladimir Mandic) on the TF.js pure-JS CPU backend, on
// inputs that Python wrote as raw little-endian float32 (H, W, 3) RGB arrays in [0, 255]. face-api itself
// does the padding/resizing (NetInput.toBatchTensor, tensor path) and normalisation, exactly as in an app.
//
// Setup (node >= 18; nothing is installed into the repo):
//   npm install --prefix /tmp/faceapi_ref @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 \
//       @tensorflow/tfjs-backend-wasm@4.22.0      (or: cp scripts/faceapi_ref/package.json /tmp/faceapi_ref/)
// Usage (normally driven by `python -m mien.models.faceapi.reference`, which writes the inputs and
// tests/data/faceapi_reference.json):
//   node scripts/faceapi_reference.mjs --prefix /tmp/faceapi_ref --spec SPEC.json --out OUT.json
// SPEC.json: {"inputs": [{"name": "x", "file": "/abs/x.f32", "shape": [H, W, 3],
//                          "nets": ["expression", "recognition"]}, ...]}
// OUT.json:  {"faceapi_version", "tfjs_version", "backend",
//             "results": {name: {"expression": {"probs": [7], "logits": [7], "embedding": [256],
//                                               "batch_tensor_sum": s},
//                                "recognition": {"descriptor": [128], "batch_tensor_sum": s}}}}
// The model weights are read from <prefix>/node_modules/@vladmandic/face-api/model (or --model-dir).

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

function parseArgs(argv) {
  const args = { prefix: '/tmp/faceapi_ref', spec: null, out: null, modelDir: null };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    const value = argv[i + 1];
    if (key === '--prefix') args.prefix = value;
    else if (key === '--spec') args.spec = value;
    else if (key === '--out') args.out = value;
    else if (key === '--model-dir') args.modelDir = value;
    else throw new Error(`unknown argument ${key}`);
    i += 1;
  }
  if (!args.spec || !args.out) {
    throw new Error('usage: faceapi_reference.mjs [--prefix DIR] --spec SPEC.json --out OUT.json');
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const require = createRequire(join(resolve(args.prefix), 'package.json'));
// The node-wasm build loads @tensorflow/tfjs (which includes the pure-JS CPU backend) without native code.
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;
await tf.setBackend('cpu');
await tf.ready();

const modelDir = args.modelDir
  ?? join(dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
const expressionNet = new faceapi.FaceExpressionNet();
await expressionNet.loadFromDisk(modelDir);
const recognitionNet = new faceapi.FaceRecognitionNet();
await recognitionNet.loadFromDisk(modelDir);

const spec = JSON.parse(readFileSync(args.spec, 'utf8'));
const results = {};
for (const input of spec.inputs) {
  const [h, w, c] = input.shape;
  const buf = readFileSync(input.file);
  if (buf.length !== h * w * c * 4) {
    throw new Error(`${input.file}: ${buf.length} bytes, expected ${h * w * c * 4}`);
  }
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  const image = tf.tensor3d(data, [h, w, c], 'float32');
  const out = {};
  const nets = input.nets ?? ['expression', 'recognition'];
  if (nets.includes('expression')) {
    const netInput = await faceapi.toNetInput(image);
    const batch = netInput.toBatchTensor(112, true);
    const features = expressionNet.faceFeatureExtractor.forwardInput(netInput);
    const logits = expressionNet.runNet(netInput);
    const probs = expressionNet.forwardInput(netInput);
    out.expression = {
      probs: Array.from(probs.dataSync()),
      logits: Array.from(logits.dataSync()),
      embedding: Array.from(features.dataSync()),
      batch_tensor_sum: batch.sum().dataSync()[0],
    };
    tf.dispose([batch, features, logits, probs]);
  }
  if (nets.includes('recognition')) {
    const netInput = await faceapi.toNetInput(image);
    const batch = netInput.toBatchTensor(150, true);
    const descriptor = await recognitionNet.computeFaceDescriptor(image);
    out.recognition = { descriptor: Array.from(descriptor), batch_tensor_sum: batch.sum().dataSync()[0] };
    tf.dispose(batch);
  }
  image.dispose();
  results[input.name] = out;
}

const report = {
  faceapi_version: faceapi.version,
  tfjs_version: tf.version_core,
  backend: tf.getBackend(),
  model_dir: modelDir,
  results,
};
writeFileSync(args.out, JSON.stringify(report, null, 1));
const n = Object.keys(results).length;
const versions = `face-api ${faceapi.version}, tfjs ${tf.version_core}, ${tf.getBackend()}`;
console.log(`wrote ${n} results to ${args.out} (${versions})`);
