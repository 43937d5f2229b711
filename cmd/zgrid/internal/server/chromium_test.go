package server

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// screenshotDirEnv names where TestUIChromium keeps its screenshots;
// default a directory under the test's TempDir.
const screenshotDirEnv = "ZEROBOOT_UI_SCREENSHOTS"

// chromium finds Debian's chromium: a failure under ZEROBOOT_E2E=required
// (make test), else a skip.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Need(t, false, "chromium not installed (make deps)")
	return ""
}

// headless starts chromium for the test and returns a tab's context.
func headless(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		// The test server's certificate is httptest's own, which chromium
		// does not know; nothing else is fetched.
		chromedp.IgnoreCertErrors,
		chromedp.DisableGPU,
		// Only because CI runs the tests as root, where chromium refuses to
		// start with its sandbox; the pages are the test's own.
		chromedp.NoSandbox,
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, for as long as ctx
		t.Fatalf("start %s: %v", bin, err)
	}
	return ctx
}

// screenshots is where the test keeps its pictures, logged.
func screenshots(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(screenshotDirEnv)
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s (set %s to keep them elsewhere)", dir, screenshotDirEnv)
	return dir
}

// The explorer in a real browser: log in with the token, the pages load,
// a node's SVG timeline renders with a bar per step, a form posted
// without its CSRF token is refused, the deny form denies, a viewer can
// neither approve nor deny.
func TestUIChromium(t *testing.T) {
	bin := chromium(t)
	e := newEnv(t, withViewer)
	fleet(t, e)
	ctx := headless(t, bin)
	shots := screenshots(t)
	// step bounds each action; the browser lives as long as ctx.
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 30*time.Second) }
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := step()
		defer cancel()
		if err := chromedp.Do(c, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(c context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(c, tg) // 100: PNG
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	// js runs a script that ends in true.
	js := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(c context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](expr)(c, tg)
			return err
		})
	}
	eval := func(what, expr string, out *[]float64) {
		t.Helper()
		c, cancel := step()
		defer cancel()
		v, err := chromedp.Run(c, chromedp.Evaluate[[]float64](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		*out = v
	}
	text := func(what string) string {
		t.Helper()
		c, cancel := step()
		defer cancel()
		s, err := chromedp.Run(c, chromedp.Text(chromedp.CSS("body")))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s
	}
	login := func(tok string) {
		t.Helper()
		run("log in",
			chromedp.Navigate(e.ts.URL+"/ui/"), // no session: the login form
			chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=token]`), tok),
			chromedp.Submit(chromedp.CSS(`input[name=token]`)),
			chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/nodes/z9"]`)))
	}

	login(token)
	run("overview", shot("overview"))
	page := text("overview")
	for _, want := range []string{"demo", "held", "z9", "p1", "a1", "role: admin"} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q:\n%s", want, page)
		}
	}

	// The failed node's timeline: an SVG in the DOM with one drawn bar
	// per step.
	var bars []float64
	run("node page",
		chromedp.Navigate(e.ts.URL+"/ui/nodes/z9"),
		chromedp.WaitVisible(chromedp.CSS(`svg rect`)),
		shot("node-z9"))
	eval("timeline bars", `Array.from(document.querySelectorAll('svg rect')).map(r => r.getBoundingClientRect().width)`, &bars)
	if len(bars) != 3 {
		t.Errorf("timeline: %d bars drawn, want 3", len(bars))
	}
	for i, w := range bars {
		if w <= 0 {
			t.Errorf("timeline bar %d has width %v", i, w)
		}
	}
	if page := text("node page"); !strings.Contains(page, "<script>alert(1)</script>") || !strings.Contains(page, "Hardware profile") {
		t.Errorf("node page text:\n%s", page)
	}

	// A timeline with the firmware's and kernel's shares before PID 1
	// (negative times): every bar inside the SVG, those before PID 1
	// ending by its start line, PID 1's starting after it.
	b, _ := json.Marshal(registry.StatusReport{NodeID: "b2", Source: "pid1", State: "booting", Token: e.bootNode("b2"),
		Timeline: []timeline.Step{{Name: "firmware (TSC)", StartMS: -3000, EndMS: -1000}, {Name: "kernel", StartMS: -1000, EndMS: 0},
			{Name: "mount", StartMS: 2, EndMS: 12}, {Name: "network", StartMS: 12, EndMS: 1000}}})
	e.must(e.do("POST", "/v1/status", asJSON, b), 204)
	run("node page with the shares before PID 1",
		chromedp.Navigate(e.ts.URL+"/ui/nodes/b2"),
		chromedp.WaitVisible(chromedp.CSS(`svg line`)),
		shot("node-b2"))
	var geo []float64 // svg left, right, line x, then each bar's left and right
	eval("bars before PID 1", `(() => {
		const s = document.querySelector('svg').getBoundingClientRect(), l = document.querySelector('svg line').getBoundingClientRect();
		return [s.left, s.right, l.left].concat(...Array.from(document.querySelectorAll('svg rect')).map(r => { const b = r.getBoundingClientRect(); return [b.left, b.right]; }));
	})()`, &geo)
	if len(geo) != 3+2*4 {
		t.Fatalf("geometry %v: want the SVG, the line and 4 bars", geo)
	}
	left, right, zero := geo[0], geo[1], geo[2]
	for i := 0; i < 4; i++ {
		l, r := geo[3+2*i], geo[4+2*i]
		if l < left || r > right || r <= l {
			t.Errorf("bar %d from %v to %v, outside the SVG (%v to %v)", i, l, r, left, right)
		}
		if before := i < 2; before && r > zero+0.5 || !before && l < zero-0.5 {
			t.Errorf("bar %d from %v to %v on the wrong side of PID 1's start at %v", i, l, r, zero)
		}
	}

	// The approve form with its CSRF field taken out is refused.
	run("approve without CSRF",
		chromedp.Navigate(e.ts.URL+"/ui/nodes/p1"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/approve"] button`)),
		js(`document.querySelector('form[action$="/approve"] input[name=csrf]').remove(), true`),
		chromedp.Click(chromedp.CSS(`form[action$="/approve"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`header`)), // the error page has no navigation
		shot("approve-without-csrf"))
	if page := text("refusal"); !strings.Contains(page, "CSRF token missing or wrong") {
		t.Errorf("approve without CSRF: page says:\n%s", page)
	}
	if e.nodeRecord("p1").Identity.Approved {
		t.Fatal("approved without a CSRF token")
	}

	// Deny, with the form as served: the node's page comes back with it
	// denied, and offers approve instead.
	run("deny",
		chromedp.Navigate(e.ts.URL+"/ui/nodes/a1"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/deny"] button`)),
		chromedp.Click(chromedp.CSS(`form[action$="/deny"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/approve"] button`)),
		shot("node-a1-denied"))
	if page := text("denied node page"); !strings.Contains(page, "denied: by the operator") || strings.Contains(page, "Deny a1") {
		t.Errorf("denied node page:\n%s", page)
	}
	if !e.nodeRecord("a1").Identity.Denied {
		t.Fatal("the deny form did not deny a1")
	}

	// Log out, log in as a viewer: no approve form, and one forged with
	// the viewer's own CSRF token is refused.
	run("log out",
		chromedp.Navigate(e.ts.URL+"/ui/"),
		chromedp.Click(chromedp.CSS(`form[action="/ui/logout"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)))
	login(viewerToken)
	var forms []float64
	run("viewer's node page",
		chromedp.Navigate(e.ts.URL+"/ui/nodes/p1"),
		chromedp.WaitVisible(chromedp.CSS(`h1`)),
		shot("viewer-node-p1"))
	eval("node forms", `[document.querySelectorAll('form[action$="/approve"], form[action$="/deny"]').length]`, &forms)
	if len(forms) != 1 || forms[0] != 0 {
		t.Errorf("the viewer is offered approve or deny forms: %v", forms)
	}
	run("viewer approves",
		js(`(() => {
			const f = document.createElement('form');
			f.method = 'post'; f.action = '/ui/nodes/p1/approve';
			f.appendChild(document.querySelector('input[name=csrf]').cloneNode());
			document.body.appendChild(f); f.submit(); return true;
		})()`),
		chromedp.WaitNotPresent(chromedp.CSS(`header`)), // the error page has no navigation
		shot("viewer-approve"))
	if page := text("viewer refusal"); !strings.Contains(page, "needs the admin role") {
		t.Errorf("viewer approve: page says:\n%s", page)
	}
	if e.nodeRecord("p1").Identity.Approved {
		t.Fatal("a viewer approved a node")
	}
}
