package graphfake

import "encoding/pem"

// CertificatePEM returns the STS's self-signed TLS certificate, PEM-encoded,
// for a client in another process to trust (e.g. through SSL_CERT_FILE).
func (s *STS) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}
