// numpy.random.default_rng(seed).uniform(low, high, size), bit for bit: SeedSequence's entropy
// mixing, PCG64 (XSL-RR 128/64) and numpy's 53-bit doubles, so that the Python and JS runs of a
// seed start from the same noise canvas (runtime/stylize.py's initial_canvas).

const M32 = 0xffffffffn;
const M64 = (1n << 64n) - 1n;
const M128 = (1n << 128n) - 1n;
const PCG_MULT = 0x2360ed051fc65da44385df649fccf645n;

const mul32 = (a, b) => Math.imul(a, b) >>> 0;

// numpy/random/bit_generator.pyx: SeedSequence with pool size 4, entropy an int >= 0.
function seedState(seed, words) {
  const INIT_A = 0x43b0d7e5, MULT_A = 0x931e8875, INIT_B = 0x8b51f9dd, MULT_B = 0x58f38ded;
  const MIX_L = 0xca01f9dd, MIX_R = 0x4973f715;
  let hashConst = INIT_A;
  const hashmix = (value) => {
    value = (value ^ hashConst) >>> 0;
    hashConst = mul32(hashConst, MULT_A);
    value = mul32(value, hashConst);
    return (value ^ (value >>> 16)) >>> 0;
  };
  const mix = (x, y) => {
    const r = (mul32(MIX_L, x) - mul32(MIX_R, y)) >>> 0;
    return (r ^ (r >>> 16)) >>> 0;
  };
  let big = BigInt(seed);
  const entropy = [];
  do { entropy.push(Number(big & M32)); big >>= 32n; } while (big > 0n);
  const pool = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) pool[i] = hashmix(i < entropy.length ? entropy[i] : 0);
  for (let s = 0; s < 4; s++) for (let d = 0; d < 4; d++) if (s !== d) pool[d] = mix(pool[d], hashmix(pool[s]));
  for (let s = 4; s < entropy.length; s++) for (let d = 0; d < 4; d++) pool[d] = mix(pool[d], hashmix(entropy[s]));
  let hc = INIT_B;
  const out = [];
  for (let i = 0; i < words * 2; i++) {
    let v = (pool[i % 4] ^ hc) >>> 0;
    hc = mul32(hc, MULT_B);
    v = mul32(v, hc);
    out.push((v ^ (v >>> 16)) >>> 0);
  }
  const u64 = [];
  for (let i = 0; i < words; i++) u64.push((BigInt(out[2 * i + 1]) << 32n) | BigInt(out[2 * i]));
  return u64;
}

export class Generator {
  constructor(seed = 0) {
    if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`seed ${seed}: expected an integer >= 0`);
    const [s0, s1, i0, i1] = seedState(seed, 4);
    const init = (s0 << 64n) | s1;
    this.inc = ((((i0 << 64n) | i1) << 1n) | 1n) & M128;
    this.state = 0n;
    this.step();
    this.state = (this.state + init) & M128;
    this.step();
  }

  step() {
    this.state = (this.state * PCG_MULT + this.inc) & M128;
  }

  nextUint64() {
    this.step();
    const s = this.state;
    const rot = s >> 122n;
    const x = ((s >> 64n) ^ s) & M64;
    return ((x >> rot) | (x << ((64n - rot) & 63n))) & M64;
  }

  nextDouble() {
    return Number(this.nextUint64() >> 11n) * (1.0 / 9007199254740992.0);
  }

  /** `count` float64 draws in [low, high), numpy's Generator.uniform. */
  uniform(low, high, count) {
    const out = new Float64Array(count);
    const range = high - low;
    for (let i = 0; i < count; i++) out[i] = low + range * this.nextDouble();
    return out;
  }
}
