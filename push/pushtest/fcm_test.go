package pushtest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/push/pushtest"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	fcm "google.golang.org/api/fcm/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// The fake is checked against Google's generated client for the FCM HTTP
// v1 API (google.golang.org/api/fcm/v1), which encodes the API as Google
// publishes it: what it sends, the fake takes; what the fake answers, it
// parses as it parses Google's answers.

// fcmClient is a messages client with the project it sends for.
type fcmClient struct {
	messages *fcm.ProjectsMessagesService
	parent   string
}

func (c fcmClient) send(ctx context.Context, m *fcm.Message) (string, error) {
	sent, err := c.messages.Send(c.parent, &fcm.SendMessageRequest{Message: m}).Context(ctx).Do()
	if err != nil {
		return "", err
	}
	return sent.Name, nil
}

func (c fcmClient) sendDryRun(ctx context.Context, m *fcm.Message) (string, error) {
	sent, err := c.messages.Send(c.parent, &fcm.SendMessageRequest{Message: m, ValidateOnly: true}).Context(ctx).Do()
	if err != nil {
		return "", err
	}
	return sent.Name, nil
}

// newFCMClient builds a messages client the way production code does:
// service-account credentials whose token fetch goes through the HTTP
// client in ctx (oauth2.HTTPClient; it is the only way in, and ctx is kept
// by the token source for every later fetch), and an oauth2.Transport over
// a transport trusting the fake for the API calls.
func newFCMClient(t *testing.T, fake *pushtest.FCM, credentials []byte) fcmClient {
	t.Helper()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, fake.Client())
	creds, err := google.CredentialsFromJSONWithType(ctx, credentials, google.ServiceAccount, pushtest.FCMScope)
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	hc := &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: fake.Transport()}}
	return newMessaging(t, fake, hc)
}

func newMessaging(t *testing.T, fake *pushtest.FCM, hc *http.Client) fcmClient {
	t.Helper()
	// The generated client's base path is the host: it adds v1/projects/...
	svc, err := fcm.NewService(context.Background(), option.WithHTTPClient(hc), option.WithEndpoint(strings.TrimSuffix(fake.Endpoint(), "v1")))
	if err != nil {
		t.Fatalf("fcm.NewService: %v", err)
	}
	return fcmClient{messages: svc.Projects.Messages, parent: "projects/" + fake.ProjectID()}
}

func readCredentials(t *testing.T, fake *pushtest.FCM) []byte {
	t.Helper()
	b, err := os.ReadFile(fake.CredentialsFile())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// errorCode is the errorCode of the FcmError detail in a send's error, as
// the generated client parsed it from the answer.
func errorCode(err error) string {
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		return ""
	}
	for _, d := range gerr.Details {
		if m, ok := d.(map[string]any); ok && m["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			code, _ := m["errorCode"].(string)
			return code
		}
	}
	return ""
}

func TestFCMAcceptsGoogleClient(t *testing.T) {
	fake := pushtest.NewFCM(t)
	client := newFCMClient(t, fake, readCredentials(t, fake))
	device := fake.NewToken()
	ctx := context.Background()

	name, err := client.send(ctx, &fcm.Message{
		Token: device,
		Data:  map[string]string{"conversation": "conv-1", "seq": "42"},
		Android: &fcm.AndroidConfig{
			CollapseKey: "conv-1",
			Priority:    "HIGH",
			Ttl:         "3600s",
		},
		Apns: &fcm.ApnsConfig{
			Headers: map[string]string{"apns-priority": "10", "apns-collapse-id": "conv-1"},
			Payload: googleapi.RawMessage(`{"aps":{"alert":{"title":"Ann","body":"hi"},"mutable-content":1},"conversation":"conv-1"}`),
		},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !strings.HasPrefix(name, "projects/"+fake.ProjectID()+"/messages/") {
		t.Errorf("name %q", name)
	}
	if _, err := client.send(ctx, &fcm.Message{Topic: "news", Data: map[string]string{"k": "v"}}); err != nil {
		t.Fatalf("Send to a topic: %v", err)
	}
	if _, err := client.sendDryRun(ctx, &fcm.Message{Condition: "'a' in topics", Data: map[string]string{"k": "v"}}); err != nil {
		t.Fatalf("dry run to a condition: %v", err)
	}

	got := fake.Wait(t, 3, 5*time.Second)
	r := got[0]
	if r.Proto != "HTTP/2.0" || r.Project != fake.ProjectID() || r.Status != 200 || r.Name != name {
		t.Errorf("record: %s project %q status %d name %q", r.Proto, r.Project, r.Status, r.Name)
	}
	if r.Token != device || r.CollapseKey != "conv-1" || r.AndroidPriority != "HIGH" {
		t.Errorf("token %q collapse key %q priority %q", r.Token, r.CollapseKey, r.AndroidPriority)
	}
	if r.Data["conversation"] != "conv-1" || r.Data["seq"] != "42" {
		t.Errorf("data %v", r.Data)
	}
	if r.APNSHeaders["apns-collapse-id"] != "conv-1" || r.APNSHeaders["apns-priority"] != "10" {
		t.Errorf("apns headers %v", r.APNSHeaders)
	}
	aps, _ := r.APNSPayload["aps"].(map[string]any)
	if alert, _ := aps["alert"].(map[string]any); alert["body"] != "hi" || aps["mutable-content"] != float64(1) || r.APNSPayload["conversation"] != "conv-1" {
		t.Errorf("apns payload %v", r.APNSPayload)
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ya29.") {
		t.Errorf("Authorization %q", r.Header.Get("Authorization"))
	}
	if r.Message["token"] != device {
		t.Errorf("message %v", r.Message)
	}
	if got[1].Topic != "news" || got[2].Condition != "'a' in topics" || !got[2].ValidateOnly {
		t.Errorf("topic %q, condition %q validate only %v", got[1].Topic, got[2].Condition, got[2].ValidateOnly)
	}
	if n := fake.TokenRequests(); n != 1 {
		t.Errorf("%d token requests for three sends, want 1 (the token source caches)", n)
	}
}

func TestFCMScriptedAnswers(t *testing.T) {
	fake := pushtest.NewFCM(t)
	client := newFCMClient(t, fake, readCredentials(t, fake))
	ctx := context.Background()
	tests := []struct {
		name       string
		answer     pushtest.Answer
		errorCode  string
		wantStatus int
		retryAfter string
	}{
		{"unregistered", pushtest.Answer{Status: 404}, "UNREGISTERED", 404, ""},
		{"unregistered by code", pushtest.Answer{Reason: "UNREGISTERED"}, "UNREGISTERED", 404, ""},
		{"quota exceeded", pushtest.Answer{Status: 429, Reason: "QUOTA_EXCEEDED", RetryAfter: 30}, "QUOTA_EXCEEDED", 429, "30"},
		{"internal", pushtest.Answer{Status: 500}, "INTERNAL", 500, ""},
		{"unavailable", pushtest.Answer{Status: 503, RetryAfter: 2}, "UNAVAILABLE", 503, "2"},
		{"sender id mismatch", pushtest.Answer{Reason: "SENDER_ID_MISMATCH"}, "SENDER_ID_MISMATCH", 403, ""},
		{"invalid argument", pushtest.Answer{Status: 400}, "INVALID_ARGUMENT", 400, ""},
		{"third party auth", pushtest.Answer{Reason: "THIRD_PARTY_AUTH_ERROR"}, "THIRD_PARTY_AUTH_ERROR", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			device := fake.NewToken()
			fake.Fail(device, tt.answer)
			msg := &fcm.Message{Token: device, Data: map[string]string{"k": "v"}}
			_, err := client.send(ctx, msg)
			if err == nil || errorCode(err) != tt.errorCode {
				t.Fatalf("Send: %v; want errorCode %s", err, tt.errorCode)
			}
			var gerr *googleapi.Error
			if !errors.As(err, &gerr) || gerr.Code != tt.wantStatus || gerr.Header.Get("Retry-After") != tt.retryAfter {
				t.Fatalf("error %+v, want status %d Retry-After %q", gerr, tt.wantStatus, tt.retryAfter)
			}
			if _, err := client.send(ctx, msg); err != nil {
				t.Fatalf("after the script: %v", err)
			}
			got := fake.Wait(t, 2, 5*time.Second)
			if len(got) != 2 || got[0].Status != tt.wantStatus || got[0].Detail != "scripted" || got[1].Status != 200 {
				t.Errorf("records %+v (the client retries none of these statuses)", got)
			}
		})
	}
}

// TestFCMErrorsSeenThroughWrapping: the client's error is a
// *googleapi.Error that errors.As finds under a wrap, so a sender may wrap
// it and still read the status, Retry-After and errorCode.
func TestFCMErrorsSeenThroughWrapping(t *testing.T) {
	fake := pushtest.NewFCM(t)
	client := newFCMClient(t, fake, readCredentials(t, fake))
	device := fake.NewToken()
	fake.Fail(device, pushtest.Answer{Status: 404})
	_, err := client.send(context.Background(), &fcm.Message{Token: device})
	var gerr *googleapi.Error
	if wrapped := fmt.Errorf("push: %w", err); !errors.As(wrapped, &gerr) || gerr.Code != 404 || errorCode(wrapped) != "UNREGISTERED" {
		t.Fatalf("Send: %v, want a 404 UNREGISTERED seen through the wrap", err)
	}
}

// TestFCMClientDoesNotRetry: one scripted 503 reaches the caller, after
// one request; the push worker, not the client, retries (with its backoff,
// honouring Retry-After), so no send holds a worker through retries.
func TestFCMClientDoesNotRetry(t *testing.T) {
	fake := pushtest.NewFCM(t)
	client := newFCMClient(t, fake, readCredentials(t, fake))
	device := fake.NewToken()
	fake.Fail(device, pushtest.Answer{Status: 503})
	if _, err := client.send(context.Background(), &fcm.Message{Token: device}); errorCode(err) != "UNAVAILABLE" {
		t.Fatalf("Send: %v, want the 503 UNAVAILABLE", err)
	}
	time.Sleep(200 * time.Millisecond) // a retry would arrive by now
	if got := fake.Requests(); len(got) != 1 || got[0].Status != 503 || got[0].Reason != "UNAVAILABLE" {
		t.Errorf("records %+v, want the one 503 UNAVAILABLE", got)
	}
}

func TestFCMRejectsBadCredentials(t *testing.T) {
	fake := pushtest.NewFCM(t)
	device := fake.NewToken()
	ctx := context.Background()

	t.Run("access token not issued", func(t *testing.T) {
		hc := &http.Client{Transport: &oauth2.Transport{
			Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.forged"}),
			Base:   fake.Transport(),
		}}
		_, err := newMessaging(t, fake, hc).send(ctx, &fcm.Message{Token: device})
		var gerr *googleapi.Error
		if !errors.As(err, &gerr) || gerr.Code != 401 || gerr.Header.Get("WWW-Authenticate") == "" || !strings.Contains(gerr.Body, `"UNAUTHENTICATED"`) {
			t.Fatalf("Send: %v, want 401 UNAUTHENTICATED with WWW-Authenticate", err)
		}
	})

	t.Run("assertion signed with another key", func(t *testing.T) {
		var creds map[string]string
		if err := json.Unmarshal(fake.CredentialsJSON(), &creds); err != nil {
			t.Fatal(err)
		}
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(other)
		creds["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		forged, _ := json.Marshal(creds)
		oauthCtx := context.WithValue(ctx, oauth2.HTTPClient, fake.Client())
		tokens, err := google.CredentialsFromJSONWithType(oauthCtx, forged, google.ServiceAccount, pushtest.FCMScope)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tokens.TokenSource.Token()
		// The JWT flow leaves RetrieveError.ErrorCode empty; the code is in Body.
		var retrieve *oauth2.RetrieveError
		if !errors.As(err, &retrieve) || retrieve.Response.StatusCode != 400 || !strings.Contains(string(retrieve.Body), `"error":"invalid_grant"`) {
			t.Fatalf("Token: %v, want 400 invalid_grant", err)
		}

		// Through the client the failed fetch is a transport error, with
		// the RetrieveError inside, returned at once: one token request,
		// no send.
		before := fake.TokenRequests()
		_, err = newFCMClient(t, fake, forged).send(ctx, &fcm.Message{Token: device})
		var gerr *googleapi.Error
		if err == nil || errors.As(err, &gerr) || !errors.As(err, &retrieve) {
			t.Fatalf("Send with forged credentials: %v, want the token fetch's error", err)
		}
		if n := fake.TokenRequests() - before; n != 1 {
			t.Errorf("%d token requests for one Send, want 1", n)
		}
	})

	t.Run("token fetch without the oauth2 client in ctx", func(t *testing.T) {
		// The token source then uses http.DefaultClient, which does not
		// trust the fake: oauth2.Transport's Base is not used for the fetch.
		creds, err := google.CredentialsFromJSONWithType(ctx, fake.CredentialsJSON(), google.ServiceAccount, pushtest.FCMScope)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := creds.TokenSource.Token(); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("Token: %v, want a certificate error", err)
		}
	})

	if got := fake.Requests(); len(got) != 1 || got[0].Status != 401 {
		t.Errorf("records %+v, want the one request with a forged token, answered 401", got)
	}
}

func TestFCMRejectsBadMessages(t *testing.T) {
	fake := pushtest.NewFCM(t)
	client := newFCMClient(t, fake, readCredentials(t, fake))
	ctx := context.Background()
	// The fake's own checks are reached with a bare request, authorized
	// with the token the client fetched.
	tests := []struct {
		name string
		body string
	}{
		{"no message", `{}`},
		{"two targets", `{"message":{"token":"a","topic":"b"}}`},
		{"no target", `{"message":{"data":{"k":"v"}}}`},
		{"data not strings", `{"message":{"token":"a","data":{"k":1}}}`},
		{"bad android priority", `{"message":{"token":"a","android":{"priority":"urgent"}}}`},
		{"apns headers not strings", `{"message":{"token":"a","apns":{"headers":{"apns-priority":10}}}}`},
		{"not json", `message`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			_, err := client.sendDryRun(ctx, &fcm.Message{Token: "warm-up"}) // fetches the access token
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodPost, fake.Endpoint()+"/projects/"+fake.ProjectID()+"/messages:send", strings.NewReader(tt.body))
			req.Header.Set("Authorization", fake.Requests()[0].Header.Get("Authorization"))
			resp, err := fake.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct {
					Code    int
					Status  string
					Details []struct{ ErrorCode string }
				}
			}
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != 400 || e.Error.Status != "INVALID_ARGUMENT" || len(e.Error.Details) != 1 || e.Error.Details[0].ErrorCode != "INVALID_ARGUMENT" {
				t.Errorf("answer %d %+v, want 400 INVALID_ARGUMENT", resp.StatusCode, e)
			}
		})
	}

	t.Run("another project", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, fake.Endpoint()+"/projects/someone-else/messages:send", strings.NewReader(`{"message":{"token":"a"}}`))
		req.Header.Set("Authorization", fake.Requests()[0].Header.Get("Authorization"))
		resp, err := fake.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("answer %d, want 403", resp.StatusCode)
		}
	})
}

func TestFCMCredentialsFile(t *testing.T) {
	fake := pushtest.NewFCM(t)
	var creds map[string]string
	if err := json.Unmarshal(readCredentials(t, fake), &creds); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"type":         "service_account",
		"project_id":   fake.ProjectID(),
		"client_email": fake.ClientEmail(),
		"token_uri":    fake.URL() + "/token",
	}
	for k, v := range want {
		if creds[k] != v {
			t.Errorf("%s = %q, want %q", k, creds[k], v)
		}
	}
	if !strings.HasPrefix(creds["private_key"], "-----BEGIN PRIVATE KEY-----") || creds["private_key_id"] == "" {
		t.Errorf("private key %q id %q", creds["private_key"][:30], creds["private_key_id"])
	}
	if fake.Endpoint() != fake.URL()+"/v1" {
		t.Errorf("Endpoint %q", fake.Endpoint())
	}
}
