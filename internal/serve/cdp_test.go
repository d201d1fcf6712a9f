package serve

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"
)

// browser is a headless Chromium driven over the Chrome DevTools Protocol: just the few
// commands the page test needs, over golang.org/x/net/websocket, so the test needs no
// browser-automation module.
type browser struct {
	cmd *exec.Cmd
	ws  *websocket.Conn
	id  int
}

// chromiumPath finds Debian's chromium (or another Chrome) or skips the test.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{os.Getenv("LAE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no headless browser: install Debian's chromium (apt-get install -y chromium) or set LAE_CHROMIUM")
	return ""
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)

// startBrowser launches headless Chromium with the flags this machine's closed network needs
// (no background connections) and attaches to its first page.
func startBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	bin := chromiumPath(t)
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--remote-allow-origins=*",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0",
		fmt.Sprintf("--window-size=%d,%d", width, height), "about:blank")
	// Own process group: the browser's helpers go with it on cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	b := &browser{cmd: cmd}
	t.Cleanup(b.close)

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(60 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 60s")
	}
	// ws://127.0.0.1:PORT/devtools/browser/<id> -> http://127.0.0.1:PORT/json/list
	hostPort := strings.SplitN(strings.TrimPrefix(browserWS, "ws://"), "/", 2)[0]
	var pageWS string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + hostPort + "/json/list")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var targets []struct{ Type, WebSocketDebuggerURL string }
		if json.NewDecoder(resp.Body).Decode(&targets) != nil {
			return false
		}
		for _, tg := range targets {
			if tg.Type == "page" && tg.WebSocketDebuggerURL != "" {
				pageWS = tg.WebSocketDebuggerURL
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "no page target")
	b.ws, err = websocket.Dial(pageWS, "", "http://127.0.0.1/")
	require.NoError(t, err)
	return b
}

// call sends one command and waits for its answer; events in between are dropped.
func (b *browser) call(ctx context.Context, method string, params any, result any) error {
	b.id++
	id := b.id
	if params == nil {
		params = struct{}{}
	}
	if err := websocket.JSON.Send(b.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return fmt.Errorf("cdp %s: send: %w", method, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = b.ws.SetReadDeadline(dl)
	}
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			return fmt.Errorf("cdp %s: receive: %w", method, err)
		}
		if msg.ID != id {
			continue
		}
		if msg.Error != nil {
			return fmt.Errorf("cdp %s: %d %s", method, msg.Error.Code, msg.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(msg.Result, result)
		}
		return nil
	}
}

// eval runs a JavaScript expression in the page and decodes its value into out.
func (b *browser) eval(ctx context.Context, expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("javascript: %s %s", res.ExceptionDetails.Text, res.ExceptionDetails.Exception.Description)
	}
	if out == nil || len(res.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(res.Result.Value, out)
}

// objectID evaluates an expression to a remote object (a DOM node) and returns its id.
func (b *browser) objectID(ctx context.Context, expr string) (string, error) {
	var res struct {
		Result struct {
			ObjectID string `json:"objectId"`
		} `json:"result"`
	}
	if err := b.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr}, &res); err != nil {
		return "", err
	}
	if res.Result.ObjectID == "" {
		return "", errors.New("expression is not an object: " + expr)
	}
	return res.Result.ObjectID, nil
}

func (b *browser) navigate(ctx context.Context, url string) error {
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := b.call(ctx, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		return err
	}
	if res.ErrorText != "" {
		return fmt.Errorf("navigate %s: %s", url, res.ErrorText)
	}
	return nil
}

// setViewport emulates a window of width x height CSS pixels (scale 1).
func (b *browser) setViewport(ctx context.Context, width, height int) error {
	return b.call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
}

// click presses and releases the left mouse button at (x, y) in CSS pixels of the viewport.
func (b *browser) click(ctx context.Context, x, y float64) error {
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		if err := b.call(ctx, "Input.dispatchMouseEvent", map[string]any{
			"type": typ, "x": x, "y": y, "button": "left", "clickCount": 1}, nil); err != nil {
			return err
		}
	}
	return nil
}

// key presses and releases one key (a DOM key name such as "Escape" and its key code).
func (b *browser) key(ctx context.Context, name string, code int) error {
	for _, typ := range []string{"keyDown", "keyUp"} {
		if err := b.call(ctx, "Input.dispatchKeyEvent", map[string]any{
			"type": typ, "key": name, "code": name, "windowsVirtualKeyCode": code}, nil); err != nil {
			return err
		}
	}
	return nil
}

// typeText types text into the focused element, as a keyboard would (input events).
func (b *browser) typeText(ctx context.Context, text string) error {
	return b.call(ctx, "Input.insertText", map[string]any{"text": text}, nil)
}

// screenshot captures the viewport as PNG into path.
func (b *browser) screenshot(ctx context.Context, path string, fullPage bool) error {
	params := map[string]any{"format": "png"}
	if fullPage {
		var m struct {
			CSSContentSize struct{ Width, Height float64 } `json:"cssContentSize"`
		}
		if err := b.call(ctx, "Page.getLayoutMetrics", nil, &m); err != nil {
			return err
		}
		params["captureBeyondViewport"] = true
		params["clip"] = map[string]any{"x": 0, "y": 0, "width": m.CSSContentSize.Width, "height": m.CSSContentSize.Height, "scale": 1}
	}
	var res struct {
		Data string `json:"data"`
	}
	if err := b.call(ctx, "Page.captureScreenshot", params, &res); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		return fmt.Errorf("decode screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

// close ends the browser's process group (it was started in its own group).
func (b *browser) close() {
	if b.ws != nil {
		_ = b.ws.Close()
	}
	pgid := b.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // helpers that outlived the browser
	<-done
}
