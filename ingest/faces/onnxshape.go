package faces

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX protobuf field numbers on the path ModelProto.graph.input[0].type.tensor_type.shape.dim.
const (
	fModelGraph      = 7
	fGraphInput      = 11
	fValueInfoType   = 2
	fTypeTensor      = 1
	fTensorShape     = 2
	fShapeDim        = 1
	fDimValue        = 1
	fDimParam        = 2
	dynamicDimension = -1
)

// onnxInputShape reads the shape of the first graph input of an ONNX model without a generated
// ONNX schema: it walks the wire format along the few fields it needs. Symbolic dimensions are
// returned as -1. It tells a fixed-size YuNet export from a dynamic one before OpenCV is asked
// to run it at a size it would reject.
func onnxInputShape(model []byte) ([]int64, error) {
	graph, err := firstField(model, fModelGraph)
	if err != nil {
		return nil, fmt.Errorf("onnx graph: %w", err)
	}
	input, err := firstField(graph, fGraphInput)
	if err != nil {
		return nil, fmt.Errorf("onnx graph input: %w", err)
	}
	typ, err := firstField(input, fValueInfoType)
	if err != nil {
		return nil, fmt.Errorf("onnx input type: %w", err)
	}
	tensor, err := firstField(typ, fTypeTensor)
	if err != nil {
		return nil, fmt.Errorf("onnx input tensor type: %w", err)
	}
	shape, err := firstField(tensor, fTensorShape)
	if err != nil {
		return nil, fmt.Errorf("onnx input shape: %w", err)
	}
	var dims []int64
	err = eachField(shape, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != fShapeDim || typ != protowire.BytesType {
			return nil
		}
		d := int64(dynamicDimension)
		if err := eachField(v, func(n protowire.Number, t protowire.Type, _ []byte, u uint64) error {
			if n == fDimValue && t == protowire.VarintType {
				d = int64(u)
			}
			return nil
		}); err != nil {
			return err
		}
		dims = append(dims, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("onnx input dims: %w", err)
	}
	return dims, nil
}

var errFieldMissing = errors.New("field missing")

// firstField returns the bytes of the first length-delimited field num of msg.
func firstField(msg []byte, num protowire.Number) ([]byte, error) {
	var out []byte
	found := false
	err := eachField(msg, func(n protowire.Number, t protowire.Type, v []byte, _ uint64) error {
		if !found && n == num && t == protowire.BytesType {
			out, found = v, true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errFieldMissing
	}
	return out, nil
}

// eachField calls fn for every top-level field of msg with its bytes (length-delimited fields)
// or its varint value.
func eachField(msg []byte, fn func(protowire.Number, protowire.Type, []byte, uint64) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		var bytes []byte
		var u uint64
		switch typ {
		case protowire.BytesType:
			bytes, n = protowire.ConsumeBytes(msg)
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(msg)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if err := fn(num, typ, bytes, u); err != nil {
			return err
		}
	}
	return nil
}

// ONNX field numbers for GraphProto.output and ValueInfoProto.name.
const (
	fGraphOutput   = 12
	fValueInfoName = 1
)

// onnxOutputNames lists the graph output names, so a model that is not a YuNet is rejected
// before OpenCV runs it (OpenCV aborts the process on some malformed graphs).
func onnxOutputNames(model []byte) ([]string, error) {
	graph, err := firstField(model, fModelGraph)
	if err != nil {
		return nil, fmt.Errorf("onnx graph: %w", err)
	}
	var names []string
	err = eachField(graph, func(n protowire.Number, t protowire.Type, v []byte, _ uint64) error {
		if n != fGraphOutput || t != protowire.BytesType {
			return nil
		}
		name, err := firstField(v, fValueInfoName)
		if err != nil {
			return fmt.Errorf("onnx output name: %w", err)
		}
		names = append(names, string(name))
		return nil
	})
	return names, err
}
