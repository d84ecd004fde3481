package config

import (
	"fmt"
	"os"
	"strings"
)

// SecretVars are the variables holding secrets. Each may instead be given
// as a file: VAR_FILE names a file whose contents (a trailing newline
// trimmed) are the value, the convention of Docker and Kubernetes secrets.
// Setting both VAR and VAR_FILE is an error.
var SecretVars = []string{
	"SLACK_BOT_TOKEN",
	"SLACK_SIGNING_SECRET",
	"SLACK_APP_TOKEN",
	"AZURE_CLIENT_SECRET",
	"AZURE_CLIENT_CERTIFICATE_PASSWORD",
	"INVITEBOT_TOKEN_KEY",
	"INVITEBOT_TOKEN_KEY_PREVIOUS",
}

// withSecretFiles returns getenv with the secret variables given as
// VAR_FILE read from their files, and the problems met (naming the
// variables and the file, never its contents).
func withSecretFiles(getenv func(string) string) (func(string) string, []error) {
	vals := map[string]string{}
	var errs []error
	for _, k := range SecretVars {
		kf := k + "_FILE"
		path := strings.TrimSpace(getenv(kf))
		if path == "" {
			continue
		}
		if strings.TrimSpace(getenv(k)) != "" {
			errs = append(errs, fmt.Errorf("%s and %s: both are set; set only one", k, kf))
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			// *fs.PathError: the operation, the path and the reason.
			errs = append(errs, fmt.Errorf("%s: %w", kf, err))
			continue
		}
		v := strings.TrimRight(string(data), "\r\n")
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s: %s is empty", kf, path))
			continue
		}
		vals[k] = v
	}
	return func(k string) string {
		if v, ok := vals[k]; ok {
			return v
		}
		return getenv(k)
	}, errs
}
