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
	User    string // who shared it: BotUserID for the bot's uploads
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
	return map[string]any{"ok": true, "upload_url": s.fileURL(uploadPath + id), "file_id": id}
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
			Comment: f.Get("initial_comment"), Content: p.content, User: BotUserID})
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

// ShareFile records a file a person shared in channel (e.g. dragged into
// their DM with the bot) and returns its ID; send the file_shared event
// with Player.FileShared.
func (s *Server) ShareFile(user, channel, name string, content []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("F%08d", s.seq)
	s.uploads.done = append(s.uploads.done, File{ID: id, Name: name, Title: name, Channel: channel,
		Content: append([]byte(nil), content...), User: user})
	return id
}

// SetFileURLBase sets the base URL of the file URLs the fake hands out:
// files.getUploadURLExternal's upload_url and files.info's
// url_private_download (default: the fake's own). For a client that
// reaches the fake through a proxy: slack-go sends its token only to
// Slack's hosts or to its API URL's host.
func (s *Server) SetFileURLBase(base string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fileURLBase = strings.TrimSuffix(base, "/")
}

// fileURL is the URL of path under the file URL base; s.mu is held.
func (s *Server) fileURL(path string) string {
	if s.fileURLBase != "" {
		return s.fileURLBase + path
	}
	return strings.TrimSuffix(s.APIURL(), "/") + path
}

// downloadPath is where url_private_download points: downloadPath + file
// ID + "/" + name, like files.slack.com/files-pri/T…-F…/name.
const downloadPath = "/files-pri/"

// filesInfo is files.info: form file → {"ok":true,"file":{…}} with the
// fields Slack documents (name, filetype, size, user, url_private_download
// on the fake's own host, channels or ims), or file_not_found.
func (s *Server) filesInfo(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fi := range s.uploads.done {
		if fi.ID != f.Get("file") {
			continue
		}
		ext := ""
		if i := strings.LastIndexByte(fi.Name, '.'); i >= 0 {
			ext = strings.ToLower(fi.Name[i+1:])
		}
		mt := mime.TypeByExtension("." + ext)
		if mt == "" {
			mt = "application/octet-stream"
		}
		link := s.fileURL(downloadPath + fi.ID + "/" + url.PathEscape(fi.Name))
		file := map[string]any{"id": fi.ID, "created": time.Now().Unix(), "name": fi.Name, "title": fi.Title,
			"mimetype": mt, "filetype": ext, "user": fi.User, "size": len(fi.Content),
			"url_private": link, "url_private_download": link, "channels": []string{}, "ims": []string{}}
		key := "channels"
		if strings.HasPrefix(fi.Channel, "D") {
			key = "ims"
		}
		file[key] = []string{fi.Channel}
		return map[string]any{"ok": true, "file": file, "comments": []any{}, "paging": map[string]any{"count": 0, "total": 0, "page": 1, "pages": 1}}
	}
	return slackErr("file_not_found")
}

// serveDownload serves a file's bytes at its url_private_download to a
// request bearing a bot token, as files.slack.com does; anything else is
// 404 (Slack redirects to a sign-in page instead).
func (s *Server) serveDownload(w http.ResponseWriter, r *http.Request) {
	id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, downloadPath), "/")
	s.mu.Lock()
	var content []byte
	found := false
	for _, fi := range s.uploads.done {
		if fi.ID == id {
			content, found = fi.Content, true
		}
	}
	call := Call{Method: "files.download", At: time.Now()}
	authed := strings.HasPrefix(r.Header.Get("Authorization"), "Bearer xoxb-")
	if !found || !authed {
		call.Error = "404"
	}
	s.calls = append(s.calls, call)
	s.signal()
	s.mu.Unlock()
	if !found || !authed {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(content)
}
