package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/lae-screening/lae/ingest/crops"
	"github.com/lae-screening/lae/ingest/faces"
)

// cropsCmd implements `lae crops`: aligned face crops of photos and videos, made by the same
// detector and aligner as the scanner, for training and inspection.
func cropsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("crops", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lae crops --out DIR [flags] INPUT...\n\n"+
			"INPUT is a photo (jpg, png, ...), a video file or URL, or a directory searched recursively.\n"+
			"Writes DIR/<name>.png (256x256 aligned crops) and appends DIR/%s (one JSON line per crop:\n"+
			"box, crop_to_frame, source_scale, and the 468 Face Mesh landmarks in crop pixels).\n\n", crops.IndexFile)
		fs.PrintDefaults()
	}
	out := fs.String("out", "", "output directory (required)")
	fps := fs.Float64("fps", 5, "frames per second sampled from videos (0 = every frame)")
	model := fs.String("face-model", faces.SpecDefault, `face detector: "yunet" (embedded), "haar-alt", "haar", "lbp" or a YuNet .onnx file`)
	maxPer := fs.Int("max-per-input", 0, "at most this many crops per input file (0 = no limit)")
	maxFaces := fs.Int("max-faces", 0, "at most this many faces per frame, largest/most confident first (0 = all)")
	minFace := fs.Int("min-face", 0, "skip faces narrower than this many pixels")
	minEyePx := fs.Float64("min-eye-px", 0, "skip faces whose eyes are closer than this many source pixels, the rule lae scan applies "+
		"(default 0: write every face, as training wants them; each record's source_scale tells how far it was upsampled)")
	lms := fs.Bool("landmarks", true, "write the 468 Face Mesh landmarks and mesh_score of each crop (needs ONNX Runtime)")
	ortLib := fs.String("ort-lib", "", "ONNX Runtime library for the landmarks (default: $LAE_ORT_LIB, then .cache/ort/)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return exitError{code: 2}
	}
	inputs, err := crops.Expand(fs.Args())
	if err != nil {
		return err
	}
	w, err := crops.New(crops.Options{Out: *out, SampleFPS: *fps, FaceModel: *model,
		MaxPerInput: *maxPer, MaxFacesPerFrame: *maxFaces, MinFaceSize: *minFace, MinEyePx: *minEyePx,
		NoLandmarks: !*lms, ORTLib: *ortLib})
	if err != nil {
		return err
	}
	total, failed := 0, 0
	for i, in := range inputs {
		if ctx.Err() != nil {
			break
		}
		n, err := w.Add(ctx, in)
		total += n
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "lae crops: %v\n", err)
		}
		if len(inputs) > 1 && (i+1)%100 == 0 {
			fmt.Fprintf(os.Stderr, "lae crops: %d/%d inputs, %d crops\n", i+1, len(inputs), total)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "lae crops: %d crops from %d inputs (%d failed) in %s\n", total, len(inputs), failed, *out)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if failed > 0 {
		return exitError{code: 1}
	}
	return nil
}
