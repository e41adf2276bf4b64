// onnxstyle's runtime in JavaScript, for any onnxruntime (node: ./node.js; browser: ../web/).
export { loadModels, metadata, LAYOUT_VERSION, LBFGS_VERSION, STEP_GRAPHS } from './models.js';
export { Objective, gram } from './objective.js';
export { drive, LineSearch, Ring, StepVectors } from './lbfgs.js';
export { stylize, initialCanvas, prepare, weighted } from './stylize.js';
export { fitSize, resizeRgb8, roundHalfEven, toUint8 } from './images.js';
export { Generator } from './random.js';
