package testenv

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"testing"
)

// DlibAnnotations is one of dlib's annotation files in ../shared/data/photos/dlib_annotated
// (training.xml, testing.xml and their *_with_face_landmarks.xml variants): hand-labelled face
// boxes and, in the landmark files, the 68 iBUG points of each box.
type DlibAnnotations struct {
	Images []struct {
		File  string `xml:"file,attr"`
		Boxes []struct {
			Top    int `xml:"top,attr"`
			Left   int `xml:"left,attr"`
			Width  int `xml:"width,attr"`
			Height int `xml:"height,attr"`
			Ignore int `xml:"ignore,attr"`
			Parts  []struct {
				X int `xml:"x,attr"`
				Y int `xml:"y,attr"`
			} `xml:"part"`
		} `xml:"box"`
	} `xml:"images>image"`
}

// ReadDlib parses a dlib annotation file, failing the test when it cannot.
func ReadDlib(tb testing.TB, path string) DlibAnnotations {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read dlib annotations: %v", err)
	}
	var ds DlibAnnotations
	dec := xml.NewDecoder(bytes.NewReader(raw))
	// The files declare ISO-8859-1 but are plain ASCII.
	dec.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	if err := dec.Decode(&ds); err != nil {
		tb.Fatalf("parse dlib annotations %s: %v", path, err)
	}
	return ds
}
