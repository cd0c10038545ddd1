package httpapi

import "testing"

func TestContentDisposition(t *testing.T) {
	for _, c := range []struct{ typ, name, want string }{
		{"image/jpeg", "a.jpg", ""},
		{"video/mp4", "a.mp4", ""},
		{"application/pdf", "", "attachment"},
		{"application/pdf", "report.pdf", `attachment; filename=report.pdf`},
		{"text/html", "my page.html", `attachment; filename="my page.html"`},
		{"application/pdf", "Résumé.pdf", `attachment; filename="R_sum_.pdf"; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf`},
		{"application/octet-stream", `a";b%.bin`, `attachment; filename="a__b_.bin"; filename*=UTF-8''a%22%3Bb%25.bin`},
	} {
		if got := contentDisposition(c.typ, c.name); got != c.want {
			t.Errorf("contentDisposition(%q, %q) = %q, want %q", c.typ, c.name, got, c.want)
		}
	}
}
