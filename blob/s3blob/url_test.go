package s3blob

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for raw, want := range map[string]Config{
		"s3://media":                     {Bucket: "media"},
		"s3://media/":                    {Bucket: "media"},
		"s3://my.bucket-1/parley/media/": {Bucket: "my.bucket-1", Prefix: "parley/media/"},
		"s3://media?region=eu-west-3":    {Bucket: "media", Region: "eu-west-3"},
		"s3://media?endpoint=http://127.0.0.1:7070&region=us-east-1&path_style=true": {Bucket: "media", Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", PathStyle: true},
		"s3://media?endpoint=https%3A%2F%2Fs3.example.com%2F&path_style=false":       {Bucket: "media", Endpoint: "https://s3.example.com"},
	} {
		got, err := ParseURL(raw)
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	for _, raw := range []string{
		"", "media", "s3:/media", "http://media", "s3://", "s3://ab", "s3://Media", "s3://-media", "s3://media-", "s3://me..dia",
		"s3://" + strings.Repeat("a", 64), "s3://user:pass@media", "s3://media/../x", "s3://media/.x", "s3://media//x", "s3://media/a%2fb",
		"s3://media#frag", "s3://media?endpoint=", "s3://media?endpoint", "s3://media?endpoint=ftp://x", "s3://media?endpoint=http://",
		"s3://media?endpoint=http://h/path", "s3://media?endpoint=http://u:p@h", "s3://media?endpoint=http://h?x", "s3://media?endpoint=http://a&endpoint=http://b",
		"s3://media?region=EU", "s3://media?region=a/b", "s3://media?path_style=yes", "s3://media?pathstyle=true", "s3://media?access_key=K",
		"s3://media?endpoint=%zz", "s3://media?endpoint=http://h%0a",
	} {
		if c, err := ParseURL(raw); err == nil {
			t.Errorf("ParseURL(%q) = %+v, want an error", raw, c)
		}
	}
}

// FuzzParseURL: the setting is operator input; whatever parses names a
// valid bucket, a clean prefix and an endpoint that net/url reads as
// scheme and host only.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://media", "s3://media/p/?endpoint=http://127.0.0.1:7070&region=us-east-1&path_style=true", "s3://a.b/c?endpoint=https%3A%2F%2Fh", "s3://x?y=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseURL(raw)
		if err != nil {
			return
		}
		if validBucket(c.Bucket) != nil {
			t.Fatalf("%q: bucket %q", raw, c.Bucket)
		}
		if c.Prefix != "" && (!strings.HasSuffix(c.Prefix, "/") || strings.Contains(c.Prefix, "..") || strings.HasPrefix(c.Prefix, "/")) {
			t.Fatalf("%q: prefix %q", raw, c.Prefix)
		}
		if c.Endpoint != "" {
			u, err := url.Parse(c.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
				t.Fatalf("%q: endpoint %q parses as %+v, %v", raw, c.Endpoint, u, err)
			}
		}
		for _, r := range c.Region {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Fatalf("%q: region %q", raw, c.Region)
			}
		}
	})
}
