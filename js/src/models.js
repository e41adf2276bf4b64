// The graphs as docs/graphs.md describes them: their versions (from each graph's own metadata),
// and loading the pair, the L-BFGS step graphs and the defaults into sessions of one engine
// (onnxruntime-node: node.js; onnxruntime-web: web/).

// The contract this code speaks (docs/graphs.md); a graph carrying another is refused.
// tests/test_contract.py checks these against onnxstyle/layout.py.
export const LAYOUT_VERSION = '6';
export const LBFGS_VERSION = '2';
export const STEP_GRAPHS = ['direction', 'segment', 'trial', 'slope', 'pair'];

function varint(buf, pos) {
  let value = 0, scale = 1, byte;
  do {
    if (pos >= buf.length) throw new Error('truncated protobuf');
    byte = buf[pos++];
    value += (byte & 0x7f) * scale;
    scale *= 128;
  } while (byte & 0x80);
  return [value, pos];
}

// The (field, bytes) of a protobuf message's length-delimited fields.
function* fields(buf, start = 0, end = buf.length) {
  let pos = start;
  while (pos < end) {
    let tag, len;
    [tag, pos] = varint(buf, pos);
    const field = Math.floor(tag / 8), wire = tag & 7;
    if (wire === 0) [, pos] = varint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      [len, pos] = varint(buf, pos);
      yield [field, buf.subarray(pos, pos + len)];
      pos += len;
    } else throw new Error(`protobuf wire type ${wire}`);
  }
}

/** An ONNX model's metadata_props (ModelProto field 14) as {key: value}. */
export function metadata(bytes) {
  const text = new TextDecoder();
  const out = {};
  for (const [field, entry] of fields(bytes)) {
    if (field !== 14) continue;
    let key = '', value = '';
    for (const [f, b] of fields(entry)) {
      if (f === 1) key = text.decode(b);
      else if (f === 2) value = text.decode(b);
    }
    out[key] = value;
  }
  return out;
}

/** Check each graph's metadata and open the sessions. `files`: {loss, features: {bytes, path?},
 * steps: {graph: {bytes, path?}}, defaults: the parsed onnxstyle.defaults.json}. */
export async function loadModels(engine, files) {
  const meta = {};
  for (const kind of ['loss', 'features']) {
    const m = metadata(files[kind].bytes);
    const where = files[kind].path ?? kind;
    if (m['onnxstyle.kind'] !== kind) throw new Error(`${where}: onnxstyle.kind ${m['onnxstyle.kind']}, expected ${kind}`);
    if (m['onnxstyle.layout'] !== LAYOUT_VERSION) {
      throw new Error(`${where}: graph layout ${m['onnxstyle.layout']}, this runtime speaks ${LAYOUT_VERSION} (re-export, or update js/)`);
    }
    meta[kind] = m;
  }
  if (meta.loss['onnxstyle.weights_sha256'] !== meta.features['onnxstyle.weights_sha256']) {
    throw new Error('the loss and features graphs were exported from different weights');
  }
  for (const g of STEP_GRAPHS) {
    const m = metadata(files.steps[g].bytes)['onnxstyle.lbfgs'];
    if (m !== `${g} ${LBFGS_VERSION}`) throw new Error(`L-BFGS step graph ${g}: ${m}, this runtime needs ${g} ${LBFGS_VERSION}`);
  }
  const d = files.defaults;
  if (d.layout !== LAYOUT_VERSION) throw new Error(`onnxstyle.defaults.json is for layout ${d.layout}: re-export`);
  const open = (f, opts) => engine.session(f.bytes, { path: f.path, ...opts });
  const steps = {};
  for (const g of STEP_GRAPHS) steps[g] = await open(files.steps[g], { steps: true });
  return {
    engine,
    meta: meta.loss,
    defaults: d.defaults,
    layers: d.layers, // {layer: channels}, network order
    loss: await open(files.loss, { kind: 'loss' }),
    features: await open(files.features, { kind: 'features' }),
    steps,
  };
}
