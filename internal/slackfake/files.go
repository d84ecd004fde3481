package slackfake

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// File is a file uploaded with files upload v2 and shared with
// files.completeUploadExternal.
type File struct {
	ID      string
	Name    string // the filename given to files.getUploadURLExternal
	Title   string // the title given on completion (default: Name)
	Channel string // channel_id it was shared to ("" if none)
	Comment string // initial_comment, if any
	Content []byte
}

// uploadPath is where the fake's upload URLs point: uploadPath + file ID.
const uploadPath = "/upload/"

// fileUploads is the files upload v2 state; Server.mu guards it.
type fileUploads struct {
	pending map[string]*pendingUpload // file ID → announced upload
	done    []File                    // completed, in order
}

type pendingUpload struct {
	name     string
	length   int
	content  []byte
	uploaded bool
}

// filesGetUploadURL is files.getUploadURLExternal: form filename and
// length (bytes, > 0) → {"ok":true,"upload_url","file_id"}. The URL is the
// fake's own.
func (s *Server) filesGetUploadURL(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
	name := f.Get("filename")
	n, err := strconv.Atoi(f.Get("length"))
	if name == "" || err != nil || n <= 0 {
		return slackErr("invalid_arguments")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("F%08d", s.seq)
	if s.uploads.pending == nil {
		s.uploads.pending = map[string]*pendingUpload{}
	}
	s.uploads.pending[id] = &pendingUpload{name: name, length: n}
	return map[string]any{"ok": true, "upload_url": strings.TrimSuffix(s.APIURL(), "/") + uploadPath + id, "file_id": id}
}

// serveUpload receives a file's bytes at its upload URL, as a multipart
// form's "file" part (what slack-go sends) or as the raw body. Like
// Slack's, it answers "OK - <length>"; an unknown file is 404, and bytes
// that do not match the announced length are 400.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, uploadPath)
	content, err := uploadedBytes(r)
	status := http.StatusOK
	s.mu.Lock()
	p := s.uploads.pending[id]
	switch {
	case r.Method != http.MethodPost:
		status = http.StatusMethodNotAllowed
	case p == nil:
		status = http.StatusNotFound
	case err != nil || len(content) != p.length:
		status = http.StatusBadRequest
	default:
		p.content, p.uploaded = content, true
	}
	call := Call{Method: "upload", At: time.Now()}
	if status != http.StatusOK {
		call.Error = strconv.Itoa(status)
	}
	s.calls = append(s.calls, call)
	s.signal()
	s.mu.Unlock()
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "OK - %d", len(content))
}

// uploadedBytes reads the file from a multipart form's "file" part, or the
// whole body.
func uploadedBytes(r *http.Request) ([]byte, error) {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "multipart/") {
		return io.ReadAll(r.Body)
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			return nil, fmt.Errorf("no file part: %w", err)
		}
		if part.FormName() == "file" {
			return io.ReadAll(part)
		}
	}
}

// filesCompleteUpload is files.completeUploadExternal: form files (JSON
// [{"id","title"}]), channel_id and initial_comment →
// {"ok":true,"files":[{"id","title"}]}. A file that was
// never announced, or whose bytes never arrived, is file_not_found; a user
// ID as channel_id is channel_not_found (open the DM first).
func (s *Server) filesCompleteUpload(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
	var files []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(f.Get("files")), &files); err != nil || len(files) == 0 {
		return slackErr("invalid_arguments")
	}
	channel := f.Get("channel_id")
	if strings.HasPrefix(channel, "U") || strings.HasPrefix(channel, "W") {
		return slackErr("channel_not_found")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fi := range files {
		if p := s.uploads.pending[fi.ID]; p == nil || !p.uploaded {
			return slackErr("file_not_found")
		}
	}
	out := make([]map[string]any, 0, len(files))
	for _, fi := range files {
		p := s.uploads.pending[fi.ID]
		delete(s.uploads.pending, fi.ID)
		title := fi.Title
		if title == "" {
			title = p.name
		}
		s.uploads.done = append(s.uploads.done, File{ID: fi.ID, Name: p.name, Title: title, Channel: channel,
			Comment: f.Get("initial_comment"), Content: p.content})
		out = append(out, map[string]any{"id": fi.ID, "title": title})
	}
	return map[string]any{"ok": true, "files": out}
}

// Files returns the files shared with files.completeUploadExternal, in
// order.
func (s *Server) Files() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]File, len(s.uploads.done))
	for i, f := range s.uploads.done {
		f.Content = append([]byte(nil), f.Content...)
		out[i] = f
	}
	return out
}
