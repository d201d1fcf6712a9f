package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine is what the numbers were measured on and how loaded it was: on a shared box the
// load average says more about a figure than its decimals.
type Machine struct {
	CPUs        int        `json:"cpus"`
	Model       string     `json:"cpu_model"`
	GoArch      string     `json:"goarch"`
	LoadAtStart [3]float64 `json:"loadavg_start"`
	LoadAtEnd   [3]float64 `json:"loadavg_end"`
}

// ReadMachine describes this machine, with the load average now as LoadAtStart.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoArch: runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.Model = CPUModel(f)
		_ = f.Close()
	}
	m.LoadAtStart, _ = LoadAvg()
	return m
}

// CPUModel is the first "model name" of a /proc/cpuinfo listing, "" when there is none.
func CPUModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// LoadAvg reads the 1, 5 and 15 minute load averages from /proc/loadavg.
func LoadAvg() ([3]float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return [3]float64{}, fmt.Errorf("read load average: %w", err)
	}
	return ParseLoadAvg(string(b))
}

// ParseLoadAvg parses the first three fields of /proc/loadavg.
func ParseLoadAvg(s string) ([3]float64, error) {
	var out [3]float64
	f := strings.Fields(s)
	if len(f) < 3 {
		return out, fmt.Errorf("parse load average %q: want 3 fields", s)
	}
	for i := range out {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return out, fmt.Errorf("parse load average %q: %w", s, err)
		}
		out[i] = v
	}
	return out, nil
}
