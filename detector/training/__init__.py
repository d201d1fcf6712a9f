"""Training, evaluation and export of the LAE (Locality-Aware AutoEncoder) face-forgery detector.

The product of this package is an ONNX file plus a model card (detector/models/). Modules:

- common:    input contract (size, mean/std, RGB), the serving-identical resize, image I/O.
- crops:     listing aligned face crops (``lae crops`` output with index.jsonl, or a folder).
- synth:     forgery synthesis families, each returning image + pixel mask.
- manifest:  the JSONL dataset manifest (read/validate/write).
- prepare:   crops -> synthesized dataset + manifest (identity-disjoint splits).
- model:     the LAE network (encoder-decoder, CAM head over the latent map).
- losses:    classification, reconstruction and locality losses.
- trainer:   the training loop (with or without masks).
- active:    active-learning selection, pick log, annotation batch export/import.
- evaluate:  metrics (acc, AUC per family/seen/unseen, attention IoU) and the eval CLI.
- export:    ONNX export with metadata and the PyTorch parity file.
- train:     the release pipeline CLI (prepare, baseline, AL rounds, all-mask, export, card).
- smoke:     a CI smoke run (< 2 minutes).
"""
