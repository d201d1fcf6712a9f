// Package model runs the LAE detector's ONNX model through ONNX Runtime: it loads the file and
// its metadata (input size, normalisation, threshold, name, version), turns BGR face crops into
// the model's input tensor, and returns per-crop fake probabilities with interpretation heatmaps.
//
// A Model is safe for concurrent use: ONNX Runtime sessions allow concurrent Run calls, and
// every call here owns its tensors.
package model

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Tensor names fixed by the export contract with detector/training.
const (
	InputName   = "input"
	ScoreName   = "score"
	HeatmapName = "heatmap"
)

// Providers accepted in Options.Provider.
const (
	ProviderCPU      = "cpu"
	ProviderCUDA     = "cuda"
	ProviderTensorRT = "tensorrt"
)

// DefaultMaxBatch is how many crops go through one session run when Options.MaxBatch is 0.
const DefaultMaxBatch = 64

// BatchSize is the batch a detector fills for provider when none is configured. A CPU gains
// little past a few crops per run and a full batch waits longer to fill; a GPU's throughput
// keeps growing with the batch (bench: BenchmarkEndToEnd in detector/worker, and the GPU
// figures in deploy/README.md).
func BatchSize(provider string) int {
	switch strings.ToLower(strings.TrimSpace(provider)) {
	case ProviderCUDA, ProviderTensorRT:
		return 64
	default:
		return 16
	}
}

// Options configures Load.
type Options struct {
	// Path of the .onnx file. Its card, if any, is CardPath(Path).
	Path string
	// LibPath of libonnxruntime; empty resolves it with FindLibrary.
	LibPath string
	// Provider is "cpu" (default), "cuda" or "tensorrt".
	Provider string
	// Threads is ONNX Runtime's intra-op thread count; 0 lets it use every core.
	Threads int
	// MaxBatch caps the crops per session run; Predict splits larger requests. 0 = DefaultMaxBatch.
	MaxBatch int
	// Spin lets ONNX Runtime's idle threads busy-wait for work. Off by default: the detector
	// shares the cores with decoding, face detection and NATS (all in one process for
	// `lae scan`), and spinning threads take CPU from them for a small latency gain.
	Spin bool
	// NoArena frees ONNX Runtime's CPU memory after every run instead of pooling it in its
	// arena. The arena grows to the largest batch seen, which on a loaded machine can come
	// late; leak tests turn it off so that growth is not mistaken for a leak.
	NoArena bool
}

// Prediction is the model's output for one crop.
type Prediction struct {
	// Score is the probability that the crop is fake, in [0, 1].
	Score float32
	// Heatmap is the interpretation map, HeatmapW*HeatmapH bytes row-major, 0..255 for 0..1.
	Heatmap []uint8
}

// Model is a loaded detector model. Close it to free the ONNX Runtime session.
type Model struct {
	md       Metadata
	path     string
	provider string
	maxBatch int
	nm       normaliser

	// scoreDims is the score output's rank (1 for [N], 2 for [N,1]).
	scoreDims int

	mu      sync.RWMutex // Close takes it exclusively, so it never frees a session mid-run
	session *ort.DynamicAdvancedSession
}

// Load opens the model at o.Path, checks its inputs, outputs and metadata, and runs it once on
// a blank crop so that a model that cannot run fails here, not on the first video.
func Load(o Options) (*Model, error) {
	if o.Path == "" {
		return nil, errors.New("load model: no model path given")
	}
	data, err := os.ReadFile(o.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load model: model file %s does not exist", o.Path)
		}
		return nil, fmt.Errorf("load model: %w", err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("load model %s: file is empty", o.Path)
	}
	provider := strings.ToLower(strings.TrimSpace(o.Provider))
	if provider == "" {
		provider = ProviderCPU
	}
	switch provider {
	case ProviderCPU, ProviderCUDA, ProviderTensorRT:
	default:
		return nil, fmt.Errorf("load model: unknown provider %q: want cpu, cuda or tensorrt", o.Provider)
	}
	lib, err := FindLibrary(o.LibPath)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", o.Path, err)
	}
	if err := initRuntime(lib); err != nil {
		return nil, fmt.Errorf("load model %s: %w", o.Path, err)
	}

	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("load model %s: not a valid ONNX model: %w", o.Path, err)
	}
	scoreDims, err := checkSignature(ins, outs)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", o.Path, err)
	}

	so, err := sessionOptions(o, provider, lib)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", o.Path, err)
	}
	defer so.Destroy()
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data,
		[]string{InputName}, []string{ScoreName, HeatmapName}, so)
	if err != nil {
		return nil, fmt.Errorf("load model %s: create session (%s): %w", o.Path, provider, err)
	}
	m := &Model{path: o.Path, provider: provider, session: sess, scoreDims: scoreDims,
		maxBatch: o.MaxBatch}
	if m.maxBatch <= 0 {
		m.maxBatch = DefaultMaxBatch
	}
	fail := func(err error) (*Model, error) {
		_ = sess.Destroy()
		return nil, fmt.Errorf("load model %s: %w", o.Path, err)
	}

	props, err := customMetadata(sess)
	if err != nil {
		return fail(err)
	}
	cardPath := CardPath(o.Path)
	c, err := readCard(cardPath)
	if err != nil {
		return fail(err)
	}
	md, err := resolveMetadata(props, c, cardPath)
	if err != nil {
		return fail(err)
	}
	in := ins[0].Dimensions
	for _, d := range in[2:] {
		if d > 0 && int(d) != md.InputSize {
			return fail(fmt.Errorf("input %q is %v but metadata says input size %d", InputName, in, md.InputSize))
		}
	}
	m.md, m.nm = md, newNormaliser(md)

	// The warm-up run tells the heatmap size even when the graph leaves it symbolic.
	_, heat, hw, hh, err := m.run(make([]float32, 3*md.InputSize*md.InputSize), 1)
	if err != nil {
		return fail(fmt.Errorf("warm-up run: %w", err))
	}
	if hw*hh == 0 || len(heat) != hw*hh {
		return fail(fmt.Errorf("warm-up run: heatmap of %d values for %dx%d", len(heat), hw, hh))
	}
	m.md.HeatmapW, m.md.HeatmapH = hw, hh
	return m, nil
}

// checkSignature verifies the tensor names, types and ranks against the export contract and
// returns the rank of the score output.
func checkSignature(ins, outs []ort.InputOutputInfo) (int, error) {
	describe := func(infos []ort.InputOutputInfo) string {
		var s []string
		for _, i := range infos {
			s = append(s, fmt.Sprintf("%s %s %v", i.Name, i.DataType, i.Dimensions))
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	if len(ins) != 1 || ins[0].Name != InputName {
		return 0, fmt.Errorf("model inputs are %s: want one float32 tensor %q [N,3,S,S]", describe(ins), InputName)
	}
	in := ins[0]
	if in.DataType != ort.TensorElementDataTypeFloat || len(in.Dimensions) != 4 || in.Dimensions[1] != 3 {
		return 0, fmt.Errorf("model input is %s: want float32 [N,3,S,S]", describe(ins))
	}
	if in.Dimensions[0] > 0 {
		return 0, fmt.Errorf("model input %q has a fixed batch of %d: export it with a dynamic batch axis", InputName, in.Dimensions[0])
	}
	var score, heat *ort.InputOutputInfo
	for i := range outs {
		switch outs[i].Name {
		case ScoreName:
			score = &outs[i]
		case HeatmapName:
			heat = &outs[i]
		}
	}
	if score == nil || heat == nil {
		return 0, fmt.Errorf("model outputs are %s: want %q [N] and %q [N,1,h,w]", describe(outs), ScoreName, HeatmapName)
	}
	if score.DataType != ort.TensorElementDataTypeFloat || heat.DataType != ort.TensorElementDataTypeFloat {
		return 0, fmt.Errorf("model outputs are %s: want float32", describe(outs))
	}
	sd := len(score.Dimensions)
	if sd != 1 && (sd != 2 || score.Dimensions[1] != 1) {
		return 0, fmt.Errorf("model output %q is %v: want [N] or [N,1]", ScoreName, score.Dimensions)
	}
	if len(heat.Dimensions) != 4 || (heat.Dimensions[1] != 1 && heat.Dimensions[1] > 0) {
		return 0, fmt.Errorf("model output %q is %v: want [N,1,h,w]", HeatmapName, heat.Dimensions)
	}
	return sd, nil
}

// sessionOptions builds the ONNX Runtime session options for the provider. The caller
// destroys them.
func sessionOptions(o Options, provider, lib string) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	fail := func(err error) (*ort.SessionOptions, error) {
		_ = so.Destroy()
		return nil, err
	}
	if o.Threads > 0 {
		if err := so.SetIntraOpNumThreads(o.Threads); err != nil {
			return fail(fmt.Errorf("set %d threads: %w", o.Threads, err))
		}
	}
	if !o.Spin {
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return fail(fmt.Errorf("disable spinning: %w", err))
		}
	}
	if o.NoArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return fail(fmt.Errorf("disable the memory arena: %w", err))
		}
	}
	// One graph runs at a time per call; parallelism comes from intra-op threads and from
	// concurrent calls, so inter-op threads would only oversubscribe the cores.
	if err := so.SetInterOpNumThreads(1); err != nil {
		return fail(fmt.Errorf("set inter-op threads: %w", err))
	}
	switch provider {
	case ProviderCUDA:
		cu, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return fail(fmt.Errorf("%w: cuda in %s: %v", errProviderUnavailable, lib, err))
		}
		defer cu.Destroy()
		if err := so.AppendExecutionProviderCUDA(cu); err != nil {
			return fail(fmt.Errorf("%w: cuda in %s: %v", errProviderUnavailable, lib, err))
		}
	case ProviderTensorRT:
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return fail(fmt.Errorf("%w: tensorrt in %s: %v", errProviderUnavailable, lib, err))
		}
		defer trt.Destroy()
		if err := so.AppendExecutionProviderTensorRT(trt); err != nil {
			return fail(fmt.Errorf("%w: tensorrt in %s: %v", errProviderUnavailable, lib, err))
		}
	}
	return so, nil
}

// customMetadata reads every key of the ONNX custom metadata map.
func customMetadata(sess *ort.DynamicAdvancedSession) (map[string]string, error) {
	meta, err := sess.GetModelMetadata()
	if err != nil {
		return nil, fmt.Errorf("read onnx metadata: %w", err)
	}
	defer meta.Destroy()
	keys, err := meta.GetCustomMetadataMapKeys()
	if err != nil {
		return nil, fmt.Errorf("read onnx metadata keys: %w", err)
	}
	props := make(map[string]string, len(keys))
	for _, k := range keys {
		v, ok, err := meta.LookupCustomMetadataMap(k)
		if err != nil {
			return nil, fmt.Errorf("read onnx metadata %s: %w", k, err)
		}
		if ok {
			props[k] = v
		}
	}
	return props, nil
}

// Metadata returns what the model says about itself (merged with its card).
func (m *Model) Metadata() Metadata { return m.md }

// Provider is the execution provider the session was created with.
func (m *Model) Provider() string { return m.provider }

// Path is the file the model was loaded from.
func (m *Model) Path() string { return m.path }

// Predict scores crops. Crops of any size are resized to the model's input; the result has
// one Prediction per crop, in order. An invalid crop fails the whole call (validate crops
// with Crop.Validate first to isolate bad ones).
func (m *Model) Predict(crops []Crop) ([]Prediction, error) {
	if len(crops) == 0 {
		return nil, nil
	}
	for i, c := range crops {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("predict: crop %d: %w", i, err)
		}
	}
	s := m.md.InputSize
	per := 3 * s * s
	out := make([]Prediction, 0, len(crops))
	for lo := 0; lo < len(crops); lo += m.maxBatch {
		hi := min(lo+m.maxBatch, len(crops))
		n := hi - lo
		input := make([]float32, n*per)
		if err := m.preprocessBatch(input, crops[lo:hi]); err != nil {
			return nil, err
		}
		scores, heat, _, _, err := m.run(input, n)
		if err != nil {
			return nil, fmt.Errorf("predict: %w", err)
		}
		hsz := m.md.HeatmapW * m.md.HeatmapH
		for i := 0; i < n; i++ {
			out = append(out, Prediction{Score: scores[i], Heatmap: quantize(heat[i*hsz : (i+1)*hsz])})
		}
	}
	return out, nil
}

// preprocessBatch fills input with the crops, spreading large batches over the cores (the
// session is idle meanwhile, so the cores are free).
func (m *Model) preprocessBatch(input []float32, crops []Crop) error {
	s := m.md.InputSize
	per := 3 * s * s
	workers := min(runtime.GOMAXPROCS(0), len(crops))
	if workers <= 1 || len(crops) < 4 {
		for i, c := range crops {
			if err := preprocess(input[i*per:(i+1)*per], c, s, m.nm); err != nil {
				return fmt.Errorf("preprocess crop %d: %w", i, err)
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(crops))
	next := make(chan int, len(crops))
	for i := range crops {
		next <- i
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = preprocess(input[i*per:(i+1)*per], crops[i], s, m.nm)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("preprocess crop %d: %w", i, err)
		}
	}
	return nil
}

// Preprocess writes one crop, resized and normalised, into dst (3*S*S floats, CHW): exactly
// what Predict feeds the model, exposed for parity checks with the training pipeline.
func (m *Model) Preprocess(dst []float32, c Crop) error {
	return preprocess(dst, c, m.md.InputSize, m.nm)
}

// quantize maps [0,1] floats to bytes; values outside are clamped, NaN becomes 0.
func quantize(h []float32) []uint8 {
	out := make([]uint8, len(h))
	for i, v := range h {
		switch {
		case v >= 1:
			out[i] = 255
		case v > 0:
			out[i] = uint8(v*255 + 0.5)
		}
	}
	return out
}

// Run runs the model on an already normalised input of n crops ([n,3,S,S] flattened) and
// returns the raw scores ([n]) and heatmaps ([n,1,h,w] flattened). It is the tensor-level path
// for parity tests against the training code; Predict is the one for crops.
func (m *Model) Run(input []float32, n int) (scores []float32, heat []float32, err error) {
	scores, heat, _, _, err = m.run(input, n)
	return scores, heat, err
}

func (m *Model) run(input []float32, n int) (scores, heat []float32, hw, hh int, err error) {
	s := m.md.InputSize
	if n <= 0 || len(input) != n*3*s*s {
		return nil, nil, 0, 0, fmt.Errorf("run: %d floats for %d crops of 3x%dx%d", len(input), n, s, s)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.session == nil {
		return nil, nil, 0, 0, errors.New("run: model is closed")
	}
	in, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(s), int64(s)), input)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("run: input tensor: %w", err)
	}
	defer in.Destroy()
	// Outputs are allocated by ONNX Runtime (nil), so a heatmap size that only the graph knows
	// needs no guessing; the wrapper copies them into Go memory.
	outs := []ort.Value{nil, nil}
	if err := m.session.Run([]ort.Value{in}, outs); err != nil {
		return nil, nil, 0, 0, fmt.Errorf("run %d crops: %w", n, err)
	}
	defer func() {
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	st, ok1 := outs[0].(*ort.Tensor[float32])
	ht, ok2 := outs[1].(*ort.Tensor[float32])
	if !ok1 || !ok2 {
		return nil, nil, 0, 0, fmt.Errorf("run: outputs are %T and %T, want float32 tensors", outs[0], outs[1])
	}
	ss, hs := st.GetShape(), ht.GetShape()
	if ss.FlattenedSize() != int64(n) || len(hs) != 4 || hs[0] != int64(n) || hs[1] != 1 {
		return nil, nil, 0, 0, fmt.Errorf("run %d crops: output shapes %v and %v, want [%d] and [%d,1,h,w]", n, ss, hs, n, n)
	}
	// The wrapper already copied the outputs into Go slices; Destroy releases only the
	// OrtValues, so the slices stay valid.
	scores, heat = st.GetData(), ht.GetData()
	for i, v := range scores {
		if math.IsNaN(float64(v)) {
			return nil, nil, 0, 0, fmt.Errorf("run: score %d is NaN", i)
		}
	}
	return scores, heat, int(hs[3]), int(hs[2]), nil
}

// Close frees the ONNX Runtime session. It waits for running predictions; later calls fail.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.session == nil {
		return nil
	}
	err := m.session.Destroy()
	m.session = nil
	if err != nil {
		return fmt.Errorf("close model %s: %w", m.path, err)
	}
	return nil
}
