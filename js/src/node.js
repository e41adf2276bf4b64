// Node side: onnxruntime-node sessions, image files (sharp), where the graphs are.

import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { loadModels } from './models.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MAX_PIXELS = 64_000_000; // runtime/images.py's MAX_PIXELS order: refuse before decoding more

/** The models folder, as onnxstyle/files.py finds it: $ONNXSTYLE_HOME, a checkout's models/, the user cache. */
export function modelsDir() {
  if (process.env.ONNXSTYLE_HOME) return resolve(process.env.ONNXSTYLE_HOME);
  if (existsSync(join(REPO, 'pyproject.toml')) && existsSync(join(REPO, 'models'))) return join(REPO, 'models');
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'onnxstyle');
}

/** The L-BFGS step graphs shipped in the Python package (onnxstyle/data). */
export const stepsDir = () => join(REPO, 'onnxstyle', 'data');

/** The onnxruntime-node engine: sessions from bytes; external data (the weights) read beside the graph. */
export function nodeEngine({ threads } = {}) {
  return {
    name: 'onnxruntime-node',
    backend: 'cpu',
    ort,
    async session(bytes, { path, steps } = {}) {
      const options = {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
        interOpNumThreads: 1,
        // The step graphs are memory-bound element-wise work: one thread (device_lbfgs.step_sessions).
        intraOpNumThreads: steps ? 1 : (threads ?? 0),
        ...(steps ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
      };
      // From the path, so onnxruntime opens the weights file beside it (mapped, not copied).
      return ort.InferenceSession.create(path ?? bytes, options);
    },
  };
}

/** Load the graph pair, the step graphs and the defaults from disk (see models.js). */
export async function loadNodeModels({ dir = modelsDir(), pool = 'avg', threads } = {}) {
  const name = pool === 'max' ? 'vgg19_gatys_maxpool' : 'vgg19_gatys';
  const file = (f) => {
    if (!existsSync(f)) throw new Error(`${f} is missing: export the graphs first (python -m onnxstyle export)`);
    return { path: f, bytes: readFileSync(f) };
  };
  const steps = {};
  for (const g of ['direction', 'segment', 'trial', 'slope', 'pair']) steps[g] = file(join(stepsDir(), `lbfgs_${g}.onnx`));
  return loadModels(nodeEngine({ threads }), {
    loss: file(join(dir, `${name}.onnx`)),
    features: file(join(dir, `${name}.features.onnx`)),
    steps,
    defaults: JSON.parse(file(join(dir, 'onnxstyle.defaults.json')).bytes.toString('utf8')),
  });
}

/** An image file as {width, height, data: RGB Uint8Array}: upright by its EXIF orientation, alpha
 * dropped (Python's load_rgb; sharp decodes JPEG with libjpeg-turbo, as Pillow does: same pixels). */
export async function readImage(path) {
  const pixels = async () => {
    const meta = await sharp(path).metadata();
    if (meta.width * meta.height > MAX_PIXELS) throw new Error(`${path}: ${meta.width}x${meta.height} is over ${MAX_PIXELS} pixels`);
    return sharp(path).rotate().removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  };
  let out;
  try {
    out = await pixels();
  } catch (e) {
    throw new Error(`${path}: cannot read it as an image (${String(e.message ?? e).split('\n')[0]})`);
  }
  const { data, info } = out;
  if (info.channels !== 3) throw new Error(`${path}: ${info.channels} channels after conversion, expected 3`);
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** Write {width, height, data: RGB Uint8Array} as PNG or JPEG (by the extension). */
export async function writeImage(path, { width, height, data }) {
  const ext = extname(path).toLowerCase();
  const img = sharp(Buffer.from(data.buffer, data.byteOffset, data.length), { raw: { width, height, channels: 3 } });
  if (ext === '.jpg' || ext === '.jpeg') await img.jpeg({ quality: 95 }).toFile(path);
  else if (ext === '.png') await img.png().toFile(path);
  else throw new Error(`${path}: write .png or .jpg`);
}
