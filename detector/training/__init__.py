"""Training, evaluation and export of the LAE (Locality-Aware AutoEncoder) face-forgery detector.

The product of this package is an ONNX file plus a model card (detector/models/). Modules:

- common:     input contract (size, mean/std, RGB), the serving-identical resize, image I/O.
- realdata:   which real inputs, the person split, H.264 re-encodes, ``lae crops``, packed splits.
- forge:      landmark-driven forgery families (SBI self-blend, swap, parts, inpaint, ...).
- degrade:    the label-blind degradation chain between forger and detector.
- sampler:    real/forgery pairs made on the fly; fixed evaluation sets; batched prediction.
- model:      the LAE network on MobileNetV2 (encoder-decoder, CAM head over the latent map).
- losses:     classification, reconstruction and locality losses.
- active:     active-learning selection, annotation batch export/import.
- metrics:    AUC, thresholds, localisation (pointing game, attention IoU).
- export:     ONNX export with metadata and the PyTorch parity file.
- trainv2:    the release protocol CLI (warm start, baseline and active-learning arms, export, card).
- fieldeval:  the video-level evaluation through ``lae scan`` (FF++ dev, real clips, photo clips).
- fakevideo, videoeval: forged copies of real videos and their evaluation through ``lae scan``.
"""
