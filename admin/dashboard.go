package admin

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the whole dashboard: markup, style and script in one
// document, so the page needs nothing but this listener.
//
//go:embed dashboard.html
var dashboardHTML []byte

// dashboardCSP allows the page's own inline style and script and requests
// to this listener only; nothing may frame the page (its buttons drain
// backends), and the token form never submits anywhere.
const dashboardCSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; " +
	"connect-src 'self'; img-src data:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"

// dashboard serves the page. It holds no data, so it is served without the
// token; the page asks for one when the API answers 401.
func (s *Server) dashboard(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(dashboardHTML)
}
