"""Every default in one place, each with its source; `onnxstyle.options.StyleOptions` declares
the options with these defaults, and every front end (API, CLI, batch, service, video) reads them
through it."""

from __future__ import annotations

# Layers: Gatys, Ecker & Bethge 2015, section 3 / the seed program (gatys_tf.md).
CONTENT_LAYERS: dict[str, float] = {"conv4_2": 1.0}
STYLE_LAYERS: dict[str, float] = {
    # w_l = 1/5 per layer: the paper (Fig. 2 caption); the seed's code forgets to apply them.
    "conv1_1": 0.2, "conv2_1": 0.2, "conv3_1": 0.2, "conv4_1": 0.2, "conv5_1": 0.2,
}

# Global weights, tuned here for the Gatys-normalised VGG19 (whose activations are far larger
# than the Caffe VGG19's, so the seed's style weight 2e2 does not carry over). Chosen by a sweep
# on astronaut/chelsea x starry_night/the_scream at 256-512 px: see docs/defaults.md.
STYLE_LOSS = "gram"  # Gatys et al. 2015 (the other losses: export/graph.py)
# Each loss's style term times its scale, so that the default style weight gives gram's balance at
# the result: the scale at which a loss's 256 px result is as far from the photo as gram's (content
# distance at conv4_2 seen by the float64 VGG19; three pairs, ladder 128 -> 256, geometric mean;
# benchmarks/results/loss_scale.md). Covariance's 2.7 is from the gradient at the initial canvas
# (norm 0.37x gram's with scale 1, four pairs at 128 px; benchmarks/results/losses.md) and holds at
# the result: 0.97-1.05x gram's content distance at 512 px (docs/losses.md). The other losses'
# start-of-run scales (scaled 0.32, w2 0.43, histogram 0.47, sliced 0.70) were 4x-16x too strong
# at the result.
STYLE_LOSS_SCALE: dict[str, float] = {"gram": 1.0, "covariance": 2.7, "scaled": 0.021, "w2": 0.030,
                                      "histogram": 0.086, "sliced": 0.165}
CONTENT_WEIGHT = 1.0  # the seed's alpha = 1
STYLE_WEIGHT = 1e5  # sweep in docs/defaults.md (the seed's 2e2 is far too weak here)
TV_WEIGHT = 0.0  # the paper uses no TV term; peers default to small smoothing

SIZE = 512  # longer side in px: jcjohnson/neural-style's -image_size default
ITERATIONS = 500  # L-BFGS iterations (the cap with until="converged"): jcjohnson/neural-style's default
# Stop when the picture is done (issue 15): every CONVERGED_WINDOW iterations, the loss fell by
# less than CONVERGED_LOSS (relative) over the window and the image's mean absolute change over
# it, per iteration, is below CONVERGED_CHANGE (0..255). Measured: six pairs at 64 px, one at 128
# (benchmarks/results/convergence.md, docs/convergence.md): the image never stops moving within
# 500 iterations (0.05-0.12/255 per iteration at 500: texture sliding at a near-constant loss),
# so the loss plateau decides: 0.5% per 20 iterations stopped at 1.2-3.1% above the loss of 500
# scipy iterations (64 px, six pairs; 3.0% at 128 px), 0.75% at up to 5.8%. The change threshold
# did not bind in those runs; it guards against stopping while the picture still moves fast.
# At 256 px with the default ladder (three pairs, benchmarks/results/schedule.md) one check
# ended at 0.860x, 1.055x and 1.082x that loss for 0.69x its cost (a plateau of one window, then
# the loss fell again); 0.2% at 0.877x-1.003x for 1.10x; two checks in a row at 0.5% (with the
# ladder's shorter-side start) at 0.984x-1.021x for 0.72x; at 512 px 1.007x and 1.018x (two pairs).
UNTIL = "converged"
CONVERGED_WINDOW = 20  # the window
CONVERGED_CHANGE = 0.15  # mean |x_k - x_(k-20)| / 20, 0..255 units
CONVERGED_LOSS = 0.005  # relative loss decrease over the window
CONVERGED_CHECKS = 2  # checks in a row: one window's plateau is often false (see above)
# Where the rule stopped each scale of the default ladder (scipy, two checks in a row, the ladder
# from the shorter side): benchmarks/results/time_to_picture_256.json (three pairs: 128 px rungs 280,
# 300; 256 px 320, 280; the one-rung 256x170 landscape 400) and time_to_picture_512.json (the same
# pairs with the look term at weight 4: 128 px 280, 300; 256 px 320, 280, 256x170 400; 512 px 280,
# 160, 512x341 220). The first rung (from noise) and the finer ones (from the upsampled picture) stop
# alike, so one pool: the Clock expects a scale to stop at the mean of those still ahead of it (294
# before it starts), at most the cap.
CONVERGED_STOPS = (160, 220, 280, 280, 280, 280, 280, 300, 300, 320, 320, 400, 400)
# The Clock's time per iteration at a later scale: this scale's x (its pixels / these) ** CLOCK_EXPONENT,
# the pixels each evaluation scores (the look term's picture's too, above LOOK_SIZE).
# Whole iterations of the default runs (time_to_picture_256.json, _512.json, the runs on an unshared
# CPU): 128 -> 256 px 2.76-3.45x (exponent 0.73-0.89), 256 -> 512 px 3.63-4.11x (0.93-1.02), 128 ->
# 512 px 10.8-13.2x (0.86-0.93). The graph alone grows 4.06-4.16x per doubling (bench.md's quiet run,
# f27923e): a small picture's iteration pays more than its pixels' share (threads, the optimiser).
CLOCK_EXPONENT = 0.9
NOISE_RATIO = 0.1  # seed: input_noise = 0.1 (noise blended into the content canvas)
INIT = "noise"  # seed: noise-blended content as the initial canvas
SEED = 0
STYLE_SCALE = 1.0  # style resized to the output's size (jcjohnson/neural-style -style_scale 1.0)
COLOR_MATCH = "pca"  # NeuralImageSynthesis' default colour-transfer mode
POOL = "avg"  # Gatys et al. 2015: average pooling gives slightly more appealing results
# Coarse to fine by default (issue 15, measured in benchmarks/results/schedule.md): at 512 px
# one scale from the noise canvas sat on a plateau (loss 1.41x that of 500 iterations when the
# stopping rule fired at 300) and fell only after 350 iterations, while 128 -> 256 -> 512 reached
# 1.047x that loss for 257 evaluations' cost at 512 px; at 256 px, 128 -> 256 ended 5 % below 500
# single-scale iterations for 0.43x their cost. Over three pairs at 512 px the default ends at
# 0.954x, 1.090x and 1.024x that loss (mean 1.023x) for 0.92x the cost (one check; two: see
# above). Where the shorter side is below 2 * LADDER_START a run has one scale.
SCALES = "auto"
# Above this size every rung also scores the picture shrunk to it as a picture of that size, content and
# style (runtime/look.py; Snelgrove 2017's Gram pyramid). Measured with a float64 VGG19 at 256 px
# (benchmarks/results/look.md, look_tried.json; docs/defaults.md): the old default's 512 px result had 3.34x
# the 256 px result's style distance (Tuebingen x The Starry Night); with the look term at weight 1,
# 1.12x-1.29x style and 1.04x-1.24x content over four pairs (style alone at 256 px: 0.74x-1.00x style but
# 1.70x-1.84x content).
LOOK_SIZE = 256
# The look term's weight (--look-weight): at weight 1 two pairs stayed above 1.2x style (1.29x, 1.26x); at
# 2, 1.23x and 1.19x; at 4, 1.18x and 1.13x, content 1.05x and 1.01x (benchmarks/results/look_weight.json).
LOOK_WEIGHT = 4.0
# The smallest rung's shorter side: VGG19's conv5_1 still sees 8x8 positions. chelsea x the_scream
# (2:3) at 256 px: a first rung of 85x128 ended at 1.055x; one scale at 1.026x, for less cost.
LADDER_START = 128
LBFGS_MEMORY = 10  # scipy's L-BFGS-B maxcor default (--history)
# Adam's step in 0..255 units (--optimizer adam), as anishathalye/neural-style's and jcjohnson's 1e1
# (on 0..255 images as ours). Measured at 128 px, two pairs, 100 iterations (benchmarks/results/adam.md):
# 10 ends at 1.47x and 1.52x scipy's loss; 30 at 1.25x and 2.70x (it oscillates on one); 3 at 2.17x, 2.81x.
LEARNING_RATE = 10.0
STYLE_LAYER_WEIGHT_EXP = 1.0  # equal layer weights: anishathalye/neural-style's --style-layer-weight-exp 1
OPTIMIZER = "scipy"  # L-BFGS-B, the optimiser of Gatys et al. and of every peer (the reference)
DEVICE = "auto"  # CUDA when onnxruntime can really run it, else the CPU (jcjohnson: -gpu 0)
PRESERVE_COLORS = "none"  # Gatys et al. 2015 transfer colours too; 2016's variants are opt-in
PRECISION = "tf32"  # onnxruntime's CUDA default (use_tf32=1), as PyTorch's cuDNN convolutions
CUDNN_SEARCH = "heuristic"  # no cuDNN timing run at each new size (every ladder scale)
