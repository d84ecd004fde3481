package slackfake

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/slack-go/slack"
)

// Ensure slack-go's files upload v2 (getUploadURLExternal, the POST to the
// upload URL, completeUploadExternal) works against the fake and records
// the file with its bytes, name, title, channel and comment.
func TestFilesUploadV2(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	content := "time,action\n2025-01-01T00:00:00Z,requested\n"
	f, err := api.UploadFileContext(t.Context(), slack.UploadFileParameters{
		Reader: strings.NewReader(content), FileSize: len(content), Filename: "audit.csv",
		Title: "Audit log", Channel: "D0ADMIN", InitialComment: "here it is",
	})
	if err != nil || f.ID == "" || f.Title != "Audit log" {
		t.Fatalf("UploadFileContext = %+v, %v", f, err)
	}
	files := s.Files()
	if len(files) != 1 {
		t.Fatalf("Files() = %+v, want 1", files)
	}
	want := File{ID: f.ID, Name: "audit.csv", Title: "Audit log", Channel: "D0ADMIN", Comment: "here it is", Content: []byte(content)}
	if got := files[0]; got.ID != want.ID || got.Name != want.Name || got.Title != want.Title || got.Channel != want.Channel ||
		got.Comment != want.Comment || !bytes.Equal(got.Content, want.Content) {
		t.Errorf("file = %+v, want %+v", got, want)
	}
	for _, m := range []string{"files.getUploadURLExternal", "upload", "files.completeUploadExternal"} {
		if n := len(s.Calls(m)); n != 1 {
			t.Errorf("%d %s calls, want 1", n, m)
		}
	}
	// Files returns copies.
	files[0].Content[0] = 'X'
	if s.Files()[0].Content[0] != 't' {
		t.Error("Files() shares its bytes with the fake")
	}
}

// Ensure the fake refuses what Slack refuses: bad arguments, bytes that do
// not match the announced length, completing an unknown or unuploaded file,
// and a user ID instead of a conversation ID.
func TestFilesUploadV2Errors(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()

	if _, err := api.GetUploadURLExternalContext(ctx, slack.GetUploadURLExternalParameters{FileName: "a.csv", FileSize: -1}); slackError(err) != "invalid_arguments" {
		t.Errorf("negative length: %v, want invalid_arguments", err)
	}
	u, err := api.GetUploadURLExternalContext(ctx, slack.GetUploadURLExternalParameters{FileName: "a.csv", FileSize: 5})
	if err != nil || u.FileID == "" || !strings.HasPrefix(u.UploadURL, strings.TrimSuffix(s.APIURL(), "/")+"/upload/") {
		t.Fatalf("getUploadURLExternal = %+v, %v", u, err)
	}
	complete := func(id, channel string) error {
		_, err := api.CompleteUploadExternalContext(ctx, slack.CompleteUploadExternalParameters{
			Files: []slack.FileSummary{{ID: id, Title: "t"}}, Channel: channel})
		return err
	}
	if err := complete(u.FileID, "D1"); slackError(err) != "file_not_found" {
		t.Errorf("completing before the bytes arrived: %v, want file_not_found", err)
	}
	err = api.UploadToURL(ctx, slack.UploadToURLParameters{UploadURL: u.UploadURL, Filename: "a.csv", Content: "too long"})
	if se, ok := err.(slack.StatusCodeError); !ok || se.Code != http.StatusBadRequest {
		t.Errorf("upload of 8 bytes announced as 5: %v, want HTTP 400", err)
	}
	err = api.UploadToURL(ctx, slack.UploadToURLParameters{UploadURL: strings.TrimSuffix(s.APIURL(), "/") + "/upload/F404", Filename: "a.csv", Content: "12345"})
	if se, ok := err.(slack.StatusCodeError); !ok || se.Code != http.StatusNotFound {
		t.Errorf("upload to an unknown file: %v, want HTTP 404", err)
	}
	if err := api.UploadToURL(ctx, slack.UploadToURLParameters{UploadURL: u.UploadURL, Filename: "a.csv", Content: "12345"}); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if err := complete("F-unknown", "D1"); slackError(err) != "file_not_found" {
		t.Errorf("unknown file: %v, want file_not_found", err)
	}
	if err := complete(u.FileID, "U0ADMIN"); slackError(err) != "channel_not_found" {
		t.Errorf("user ID as channel: %v, want channel_not_found", err)
	}
	if len(s.Files()) != 0 {
		t.Errorf("files after failed completions: %+v", s.Files())
	}
	if err := complete(u.FileID, "D1"); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := complete(u.FileID, "D1"); slackError(err) != "file_not_found" {
		t.Errorf("completing twice: %v, want file_not_found", err)
	}
	if f := s.Files(); len(f) != 1 || string(f[0].Content) != "12345" || f[0].Title != "t" || f[0].Channel != "D1" {
		t.Errorf("files = %+v", f)
	}
	if _, err := slack.New("xoxp-user", slack.OptionAPIURL(s.APIURL())).GetUploadURLExternalContext(ctx,
		slack.GetUploadURLExternalParameters{FileName: "a.csv", FileSize: 5}); slackError(err) != "not_authed" {
		t.Errorf("user token: %v, want not_authed", err)
	}
}

// A file a person shares is what slack-go's files.info and download read:
// name, type, size, sharer and DM, and the bytes, only with a bot token.
func TestSharedFileInfoAndDownload(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	content := []byte("email\nbob@fabrikam.com\n")
	id := s.ShareFile("U0ANN", "D0ANN", "guests.csv", content)
	f, _, _, err := api.GetFileInfoContext(t.Context(), id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.ID != id || f.Name != "guests.csv" || f.Filetype != "csv" || f.Mimetype != "text/csv; charset=utf-8" || f.Size != len(content) ||
		f.User != "U0ANN" || len(f.IMs) != 1 || f.IMs[0] != "D0ANN" || f.URLPrivateDownload == "" {
		t.Errorf("files.info = %+v", f)
	}
	var got bytes.Buffer
	if err := api.GetFileContext(t.Context(), f.URLPrivateDownload, &got); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Errorf("download = %q, %v", got.Bytes(), err)
	}
	resp, err := http.Get(f.URLPrivateDownload) // no token
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("download without a token: %d, want 404", resp.StatusCode)
	}
	if _, _, _, err := api.GetFileInfoContext(t.Context(), "F0NONE", 0, 0); err == nil || !strings.Contains(err.Error(), "file_not_found") {
		t.Errorf("unknown file: %v", err)
	}
	if calls := s.Calls("files.download"); len(calls) != 2 || calls[0].Error != "" || calls[1].Error != "404" {
		t.Errorf("download calls = %+v", calls)
	}
}
