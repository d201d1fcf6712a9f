package laev1

import "testing"

func TestUploadObject(t *testing.T) {
	for _, tc := range []struct {
		url, object string
		ok          bool
	}{
		{UploadURL("v20261206-abc"), "v20261206-abc", true},
		{"upload:", "", false},
		{"upload:../etc/passwd", "", false},
		{"upload:a/b", "", false},
		{"uploads:v1", "", false},
		{"https://cdn.test/v1.mp4", "", false},
		{"/data/upload:v1", "", false},
	} {
		object, ok := UploadObject(tc.url)
		if object != tc.object || ok != tc.ok {
			t.Errorf("UploadObject(%q) = %q, %v; want %q, %v", tc.url, object, ok, tc.object, tc.ok)
		}
	}
}
